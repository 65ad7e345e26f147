"""The Discord write scheduler on its own: the order it lets writes out in, what it merges and sheds,
and what it learns from Discord's headers. Small windows keep the tests short; nothing here asserts
how long anything took."""

from __future__ import annotations

import asyncio

import pytest

from bot.discord.scheduler import (
    GLOBAL,
    DiscordLimits,
    Ticket,
    WriteScheduler,
    bucket_of_path,
    channel_bucket,
    interaction_bucket,
)
from tests.helpers import wait_for

CHANNEL = channel_bucket(1)
TIGHT = DiscordLimits(per_channel=(2, 0.3), margin=0.0, reserve_channel=0, reserve_global=0)


def progress_sender(log: list[str], name: str):  # type: ignore[no-untyped-def]
    async def send(ticket: Ticket) -> None:
        ticket.spent = True
        log.append(name)

    return send


async def test_a_final_goes_before_every_waiting_progress_edit_in_its_channel() -> None:
    scheduler = WriteScheduler(TIGHT)
    log: list[str] = []
    for n in range(6):
        scheduler.offer_progress(
            f"msg{n}",
            lambda: (CHANNEL, GLOBAL),
            progress_sender(log, f"progress {n}"),
            min_interval=0,
        )
    await wait_for(lambda: len(log) == 2, "the first window's progress edits")  # the bucket is now full

    async def final() -> None:
        await scheduler.acquire((CHANNEL, GLOBAL), final=True)
        log.append("final")

    await final()
    await wait_for(lambda: len(log) == 7, "the remaining progress edits")
    await scheduler.close()
    assert log[2] == "final", log  # nothing that was waiting overtook it
    assert sorted(log[3:]) == [f"progress {n}" for n in range(2, 6)]


async def test_progress_keeps_a_slot_for_finals() -> None:
    limits = DiscordLimits(per_channel=(3, 30.0), margin=0.0, reserve_channel=1, reserve_global=0)
    scheduler = WriteScheduler(limits)
    log: list[str] = []
    for n in range(5):
        scheduler.offer_progress(f"msg{n}", lambda: (CHANNEL,), progress_sender(log, f"p{n}"), min_interval=0)
    await wait_for(lambda: len(log) == 2, "progress edits up to the reserve")
    # The window is 30 s: the third slot is the reserve, and a final gets it at once.
    await asyncio.wait_for(scheduler.acquire((CHANNEL,), final=True), timeout=5)
    assert log == ["p0", "p1"]
    await scheduler.close()


async def test_progress_is_merged_per_message_and_the_latest_state_wins() -> None:
    scheduler = WriteScheduler(TIGHT)
    shown: list[str] = []
    for state in ("10%", "20%", "30%"):
        scheduler.offer_progress("card", lambda: (CHANNEL,), progress_sender(shown, state), min_interval=0)
    await wait_for(lambda: shown, "the merged edit")
    await asyncio.sleep(0)
    assert shown == ["30%"]
    assert scheduler.stats.progress_shed == 2
    await scheduler.close()


async def test_under_load_progress_is_shed_and_every_card_still_moves() -> None:
    """Twenty cards in one channel, each changing 5 times, through a bucket of 2 per 0.3 s: fewer edits
    than changes are sent, every card gets its turn, and each one's last edit is its latest state."""
    scheduler = WriteScheduler(TIGHT)
    shown: dict[str, list[int]] = {f"card{n}": [] for n in range(20)}

    def sender(card: str, state: int):  # type: ignore[no-untyped-def]
        async def send(ticket: Ticket) -> None:
            ticket.spent = True
            shown[card].append(state)

        return send

    for state in range(5):
        for card in shown:
            scheduler.offer_progress(card, lambda: (CHANNEL,), sender(card, state), min_interval=0)
    await wait_for(lambda: all(s and s[-1] == 4 for s in shown.values()), "every card at its latest state")
    await scheduler.close()
    sent = sum(len(s) for s in shown.values())
    assert sent < 100 and scheduler.stats.progress_shed == 100 - sent
    assert all(s == sorted(s) for s in shown.values())  # never an older state after a newer one


async def test_a_settled_message_gets_no_more_progress() -> None:
    scheduler = WriteScheduler(DiscordLimits(per_channel=(1, 30.0), margin=0.0, reserve_channel=0))
    log: list[str] = []
    scheduler.offer_progress("a", lambda: (CHANNEL,), progress_sender(log, "a"), min_interval=0)
    await wait_for(lambda: log, "the first edit")
    scheduler.offer_progress("b", lambda: (CHANNEL,), progress_sender(log, "b"), min_interval=0)
    await scheduler.settle("b")  # b's final state is about to be shown
    await asyncio.sleep(0.05)
    assert log == ["a"] and scheduler.stats.progress_shed == 1
    await scheduler.close()


async def test_interaction_buckets_are_separate_from_the_channel() -> None:
    scheduler = WriteScheduler(DiscordLimits(per_channel=(1, 30.0), margin=0.0))
    await scheduler.acquire((CHANNEL, GLOBAL), final=True)
    # The channel is full for 30 s; interaction tokens each have their own bucket.
    for n in range(3):
        await asyncio.wait_for(scheduler.acquire((interaction_bucket(f"token{n}"),), final=True), timeout=5)


async def test_discord_headers_pause_an_empty_bucket_and_lower_a_limit() -> None:
    now = [100.0]
    scheduler = WriteScheduler(clock=lambda: now[0])
    path = "/api/v10/channels/1/messages/2"
    assert bucket_of_path(path) == CHANNEL
    assert bucket_of_path("/api/v10/webhooks/9/tok/messages/@original") == interaction_bucket("tok")
    scheduler.observe(
        "PATCH",
        path,
        200,
        {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "4.0"},
    )
    window = scheduler._window(CHANNEL)
    assert window.limit == 3 and window.room(now[0]) == 0
    now[0] += 5.0
    assert window.room(now[0]) == 3
    scheduler.observe(
        "POST", "/api/v10/channels/1/messages", 429, {"X-RateLimit-Global": "true", "Retry-After": "2"}
    )
    assert scheduler._window(GLOBAL).room(now[0]) == 0


async def test_a_bucket_discord_says_is_smaller_than_the_reserve_still_lets_progress_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = WriteScheduler(DiscordLimits(margin=0.0))
    token = "aW50ZXJhY3Rpb246c2VjcmV0"
    path = f"/api/v10/webhooks/9/{token}/messages/@original"
    # A 429 that says this interaction's bucket holds one write, fewer than progress keeps in reserve.
    scheduler.observe("PATCH", path, 429, {"X-RateLimit-Limit": "1", "Retry-After": "0.05"})
    log: list[str] = []
    scheduler.offer_progress(
        "card", lambda: (interaction_bucket(token),), progress_sender(log, "p"), min_interval=0
    )
    await wait_for(lambda: log == ["p"], "the progress edit once the pause ended")
    await scheduler.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.discord.scheduler"]
    assert warnings and all(token not in message for message in warnings)
    assert "an interaction's webhook" in warnings[0]


def test_a_process_of_a_fleet_plans_with_its_share_of_the_global_bucket() -> None:
    whole = DiscordLimits()
    assert whole.shared(1.0) == whole
    half = whole.shared(0.5)
    assert half.window(GLOBAL)[0] == whole.window(GLOBAL)[0] // 2
    assert half.window(CHANNEL) == whole.window(CHANNEL)  # a server is worked by its shard's process
    tenth = whole.shared(0.01)
    limit, _, reserve = tenth.window(GLOBAL)
    assert limit >= 2 and reserve < limit


async def test_a_delayed_edit_waits_its_delay_and_a_final_meanwhile_sheds_it() -> None:
    now = [100.0]
    scheduler = WriteScheduler(TIGHT, clock=lambda: now[0])
    shown: list[str] = []
    scheduler.offer_progress(
        "quick", lambda: (CHANNEL,), progress_sender(shown, "quick"), min_interval=0, delay=3
    )
    scheduler.offer_progress(
        "slow", lambda: (CHANNEL,), progress_sender(shown, "slow"), min_interval=0, delay=3
    )
    scheduler.offer_progress("now", lambda: (CHANNEL,), progress_sender(shown, "now"), min_interval=0)
    await wait_for(lambda: shown == ["now"], "the undelayed edit")
    await scheduler.settle("quick")  # its final came within the delay: the edit is never sent
    now[0] += 3.0
    await wait_for(lambda: shown == ["now", "slow"], "the delayed edit, once its delay passed")
    await scheduler.close()
    assert scheduler.stats.progress_sent == 2
