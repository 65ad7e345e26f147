"""Small helpers every cog uses to read an interaction."""

from __future__ import annotations

from typing import Any

import discord

from bot.domain.errors import UserError


def guild_id_of(interaction: discord.Interaction[Any]) -> int:
    """The server the interaction came from; commands that need one refuse DMs in words."""
    if interaction.guild_id is None:
        raise UserError("This command works in servers only, not in direct messages.")
    return interaction.guild_id


def role_ids(user: discord.abc.User) -> list[int]:
    """The member's role ids (interactions carry the member, so no members intent is needed)."""
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []
