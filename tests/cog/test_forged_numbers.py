"""Forged numbers (the whole bot in-process, tests/inprocess.py): Discord's client enforces an option's range and a button's custom_id
is whatever the client sends, and discord.py passes both through. Each forged number here gets the
clear one-line refusal, ephemerally, and the stored credits and settings stay exactly as they were.

The fake Discord checks option ranges the way Discord's client does, so a forging client is made by
taking the ranges (and choices) off the registered command definitions it builds payloads from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from tests.fakes.discord import FakeDiscord
from tests.inprocess import InProcessBot

HUGE = 2**70
CREDIT_TABLES = ("guild_settings", "role_overrides", "member_quotas", "grants", "audit_log")


def forge_ranges(fake: FakeDiscord, *names: str) -> None:
    """Drop min/max values and choices from the registered commands, as a forging client would."""

    def strip(options: Iterable[dict[str, Any]]) -> None:
        for option in options:
            for key in ("min_value", "max_value", "choices"):
                option.pop(key, None)
            strip(option.get("options") or [])

    for name in names:
        command = fake.get_command(name) or fake.get_command(name, fake.guild_id)
        assert command is not None, f"/{name} is not registered"
        strip(command.get("options") or [])


def credit_state(bot: InProcessBot) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored credits row: what a refused change must leave alone."""
    with sqlite3.connect(bot.database) as conn:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall()) for table in CREDIT_TABLES}


async def refusal(handle: Any) -> str:
    callback = await handle.wait_response(timeout=10)
    data: dict[str, Any] = callback.json.get("data") or {}
    assert callback.json["type"] == 4 and data.get("flags", 0) & 64, "refusals are ephemeral"
    content: str = data.get("content") or ""
    assert "\n" not in content and "Something went wrong" not in content, content
    return content


async def test_forged_options_are_refused_clearly_and_change_nothing(
    bot: InProcessBot, fake: FakeDiscord
) -> None:
    moderator = int(fake.owner_user["id"])
    member = int(fake.default_user["id"])
    vip = int(fake.add_role("vip")["id"])  # before start, so the bot's guild cache has the role
    await bot.start()
    forge_ranges(fake, "videomod")
    # A first real change, so "nothing changed" compares against stored rows, not an empty table.
    granted = await fake.invoke_command("videomod grant", {"user": member, "credits": 5}, user=moderator)
    assert (
        (await granted.wait_response())
        .json["data"]["content"]
        .startswith(f"Granted 5 credits to <@{member}>")
    )
    before = credit_state(bot)
    assert before["grants"] and before["audit_log"]

    async def videomod(command: str, options: dict[str, Any]) -> str:
        return await refusal(await fake.invoke_command(f"videomod {command}", options, user=moderator))

    assert await videomod("grant", {"user": member, "credits": -50}) == (
        "`credits` must be a whole number from 1 to 1,000,000 credits; you gave -50. "
        "A grant only adds credits: to give a member fewer, lower their allowance with `/videomod setquota`."
    )
    assert await videomod("setquota", {"user": member, "credits": 2**63}) == (
        "`credits` must be a whole number from 0 to 1,000,000 credits; you gave 9,223,372,036,854,775,808. "
        "Leave it empty to use the server or role default."
    )
    assert await videomod("settings", {"max_concurrent": 0}) == (
        "`max_concurrent` must be a whole number from 1 to 50 videos; you gave 0. "
        "To stop members making videos, set `allowance` to 0 or limit `channels`."
    )
    assert await videomod("settings", {"allowance": 10, "cooldown": -1}) == (
        "`cooldown` must be a whole number from 0 to 86,400 seconds; you gave -1. 0 means no cooldown."
    )
    assert await videomod("role", {"role": vip, "max_concurrent": 0}) == (
        "`max_concurrent` must be a whole number from 1 to 50 videos; you gave 0. "
        "Leave it empty for no override; to stop members making videos, set `allowance` to 0."
    )
    assert (
        await videomod("jobs", {"page": 0}) == "`page` must be a whole number from 1 to 10,000; you gave 0."
    )
    job_refusal = (
        "`job` must be a whole number from 1 to 9,223,372,036,854,775,807; you gave a number far too large. "
        "`/videos` and `/videomod jobs` list the job numbers."
    )
    assert await videomod("cancel", {"job": HUGE}) == job_refusal
    # Durations in other scripts' digits: "²".isdigit() is true, int("²") is not a number.
    assert await videomod("settings", {"seconds": "4, ²"}) == (
        "Durations must be among 4, 8, 12, as whole seconds in digits 0-9."
    )
    assert await videomod("settings", {"channels": "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧"}) == (
        "Name channels as #mentions or ids, e.g. `#videos #art`, or `all`."
    )

    forge_ranges(fake, "remix")
    assert await refusal(await fake.invoke_command("remix", {"video": HUGE, "prompt": "x"})) == job_refusal
    assert credit_state(bot) == before


async def test_forged_button_ids_are_refused_clearly(bot: InProcessBot, fake: FakeDiscord) -> None:
    member = int(fake.default_user["id"])
    await bot.start()
    quota = await fake.invoke_command("quota")
    await quota.wait_response()
    message = await quota.original_message()
    before = credit_state(bot)

    async def press(custom_id: str) -> str:
        # A message the client claims carries this button: custom_ids are the client's to send.
        forged = replace(
            message,
            components=[
                {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": custom_id}]}
            ],
        )
        return await refusal(await fake.invoke_component(forged, custom_id))

    job_refusal = (
        "`job` must be a whole number from 1 to 9,223,372,036,854,775,807; you gave a number far too large. "
        "`/videos` and `/videomod jobs` list the job numbers."
    )
    for action in ("details", "cancel", "again", "remix"):
        assert await press(f"videobot:{action}:{HUGE}") == job_refusal, action
    assert await press(f"videobot:videos:{member}:{HUGE}") == (
        "`page` must be a whole number from 1 to 10,000; you gave a number far too large."
    )
    assert await press(f"videobot:videos:{member}:0") == (
        "`page` must be a whole number from 1 to 10,000; you gave 0."
    )
    assert credit_state(bot) == before
