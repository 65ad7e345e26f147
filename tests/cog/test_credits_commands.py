"""The ``/videomod`` commands the credits flow doesn't cover, through the fake Discord (the whole bot in-process):
role overrides, resetting usage, the job list, and settings that are refused or only shown."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord import FakeDiscord
from tests.inprocess import InProcessBot


async def ephemeral(handle: Any) -> dict[str, Any]:
    callback = await handle.wait_response(timeout=10)
    data: dict[str, Any] = callback.json.get("data") or {}
    assert data.get("flags", 0) & 64, "moderator and quota replies are ephemeral"
    return data


async def test_role_override_reset_job_list_and_settings_replies(
    bot: InProcessBot, fake: FakeDiscord
) -> None:
    moderator = int(fake.owner_user["id"])
    member = int(fake.default_user["id"])
    vip = int(fake.add_role("vip")["id"])  # before start, so the bot's guild cache has the role
    fake.add_member(member, name="member", roles=[vip])
    await bot.start()

    data = await ephemeral(
        await fake.invoke_command("videomod role", {"role": vip, "allowance": 90}, user=moderator)
    )
    (embed,) = data["embeds"]
    assert embed["title"] == "Role overrides updated"
    assert {"name": "Role overrides", "value": f"<@&{vip}>: 90 credits", "inline": False} in embed["fields"]
    quota = await ephemeral(await fake.invoke_command("quota", user=member))
    assert f"**90** credits left of 90 (role <@&{vip}>)" in quota["content"]

    reset = await ephemeral(
        await fake.invoke_command("videomod resetquota", {"user": member}, user=moderator)
    )
    assert reset["content"].startswith(f"Usage of <@{member}> reset.\n**90** credits left of 90")

    refused = await ephemeral(
        await fake.invoke_command("videomod settings", {"models": "sora-9"}, user=moderator)
    )
    assert refused["content"].startswith("Unknown model(s): sora-9. The catalog has ")
    shown = await ephemeral(await fake.invoke_command("videomod settings", user=moderator))
    assert shown["embeds"][0]["title"] == "Video settings"
    assert {"name": "Models", "value": "all", "inline": True} in shown["embeds"][0]["fields"]

    none = await ephemeral(await fake.invoke_command("videomod jobs", user=moderator))
    assert none["content"] == "No jobs match."
    past = await ephemeral(await fake.invoke_command("videomod jobs", {"page": 3}, user=moderator))
    assert past["content"] == "There are only 1 page(s)."
