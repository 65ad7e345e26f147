"""When the provider budget is the bottleneck, members see it: a place in line on the card and in
``/quota``, first come first served across members."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.discord.bot import VideoBot
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord.world import StoredMessage
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import ephemeral_content

PLACE = re.compile(
    r"(\d+)(?:st|nd|rd|th) in line for the provider \(first come, first served\) · sent <t:\d+:R> \(estimate\)"
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The provider takes one new video a minute: the first is sent, the rest wait in line.
    return {"video_api_creates_per_minute": 1}


def place_on(message: StoredMessage) -> int | None:
    fields = message.embeds[0].get("fields", []) if message.embeds else []
    for field in fields:
        if field["name"] == "Place in line":
            found = PLACE.fullmatch(field["value"])
            assert found, field["value"]
            return int(found.group(1))
    return None


async def test_a_job_behind_the_provider_budget_shows_its_place_in_line_and_quota_lists_it(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    members = [int(fake.add_member(name=f"member{n}")["user"]["id"]) for n in range(3)]
    handles = []
    for member in members:  # two each (the default concurrency), six in all, in this order
        for n in range(2):
            handles.append(await fake.invoke_command("video", {"prompt": f"clip {member} {n}"}, user=member))
    # Four are being sent (one went through, three wait for the create budget); the sixth waits
    # behind them and its card says where it stands.
    card = await handles[-1].original_message(timeout=20, predicate=lambda m: place_on(m) is not None)
    assert place_on(card) in (5, 6)
    assert card.embeds[0]["title"] == "⏳ Making your video…"
    quota = ephemeral_content(
        (await (await fake.invoke_command("quota", user=members[2])).wait_response()).json
    )
    waiting = quota.split("**Waiting for the provider**\n", 1)[1].splitlines()
    places = [int(m.group(1)) for m in map(PLACE.search, waiting) if m]
    assert len(places) == 2 and places == sorted(places) and places[1] in (5, 6), quota
    # Nobody else's job is listed to this member.
    assert all(line.startswith("`#") for line in waiting)
    assert sum(1 for r in renderer.requests if r.method == "POST") == 1
