"""One place that turns errors into replies, for commands, buttons and forms alike.

A refusal (``UserError``) shows its message, with times as Discord timestamps (every client counts
them down in the reader's own time zone) and channels as mentions; anything unexpected gets the apology with a reference
the admin can find in the log. The answer goes where Discord still takes one: the interaction
response when it is unanswered, else a followup, else (the token expired: 15 minutes) nowhere but
the log (Red-DiscordBot's ``redbot/core/tree.py`` does the same).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bot.discord.mentions import NO_MENTIONS
from bot.domain.errors import UserError

log = logging.getLogger(__name__)

DMS_REFUSED = "This command works in servers only, not in direct messages."


class DiscordMarkup:
    """``Markup`` that writes a refusal's times and channels as Discord renders them."""

    def time(self, at: float) -> str:
        return f"<t:{int(at)}:R>"

    def channels(self, ids: Sequence[int]) -> str:
        return ", ".join(f"<#{channel_id}>" for channel_id in ids)


DISCORD_MARKUP = DiscordMarkup()


def apology(reference: str) -> str:
    """The one apology text for a failure on the bot's side."""
    return (
        f"Something went wrong on the bot's side (reference `{reference}`). "
        "You are only ever charged for videos you receive."
    )


def describe(error: BaseException, *, what: str = "command") -> str:
    """The member-facing text for ``error`` (unexpected errors are logged with a reference)."""
    original = getattr(error, "original", error)
    if isinstance(original, UserError):
        return original.render(DISCORD_MARKUP)
    if isinstance(error, app_commands.NoPrivateMessage):
        return DMS_REFUSED
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You don't have permission to use this command."
    reference = uuid.uuid4().hex[:8]
    log.error("%s failed (ref %s)", what, reference, exc_info=original)
    return apology(reference)


async def answer_error(interaction: discord.Interaction[Any], error: BaseException, *, what: str) -> None:
    await respond_ephemeral(interaction, describe(error, what=what))


async def respond_ephemeral(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer with ``response`` or ``followup`` depending on whether the interaction was
    acknowledged; an expired interaction can't be answered at all, so the text is only logged."""
    if interaction.is_expired():
        log.info("interaction %s expired before its answer: %s", interaction.id, text)
        return
    try:
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
                return
            except discord.InteractionResponded:
                pass  # answered meanwhile (another task): a followup still reaches the member
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:
        log.warning("could not send an error reply: %s", exc)
