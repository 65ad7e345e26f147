from __future__ import annotations

from dataclasses import replace

import pytest

from bot.discord.embeds import estimate_finish, job_embed, ordinal, progress_bar
from bot.domain.jobs import ChargeState, Job, JobStatus, QueuePlace

NOW = 1_800_000_000.0


def make_job(**changes: object) -> Job:
    job = Job(
        id=7,
        guild_id=1,
        channel_id=2,
        user_id=3,
        user_name="ana",
        prompt="a red fox running through snow @everyone",
        model="sora-2",
        size="720x1280",
        seconds=4,
        cost=4,
        usd=0.4,
        status=JobStatus.IN_PROGRESS,
        charge_state=ChargeState.RESERVED,
        progress=40,
        provider_video_id="video_1",
        provider_status="in_progress",
        source_job_id=None,
        remixed_from_video_id=None,
        reference_image_path=None,
        media_path=None,
        error_code=None,
        error_message=None,
        application_id=9,
        interaction_token="secret-token",
        token_expires_at=NOW + 900,
        reply_message_id=11,
        delivered_message_id=None,
        upload_limit=None,
        created_at=NOW - 60,
        submitted_at=NOW - 59,
        started_at=NOW - 40,
        generated_at=None,
        finished_at=None,
        updated_at=NOW,
    )
    return replace(job, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("percent", "bar"),
    [
        (0, "▱" * 20 + " 0%"),
        (5, "▰" + "▱" * 19 + " 5%"),
        (52, "▰" * 10 + "▱" * 10 + " 52%"),
        (100, "▰" * 20 + " 100%"),
    ],
)
def test_progress_bar(percent: int, bar: str) -> None:
    assert progress_bar(percent) == bar


def test_progress_bar_clamps() -> None:
    assert progress_bar(-5) == progress_bar(0)
    assert progress_bar(140) == progress_bar(100)


def fields(embed: object) -> dict[str, str]:
    return {f.name: f.value for f in embed.fields}  # type: ignore[attr-defined]


def test_in_progress_card_shows_request_bar_and_eta() -> None:
    embed = job_embed(make_job(), now=NOW)
    f = fields(embed)
    assert embed.description == "a red fox running through snow @\u200beveryone"  # no highlight
    assert f["Model"] == "`sora-2`" and f["Size"] == "720x1280" and f["Duration"] == "4 s"
    assert f["Requested by"] == "<@3>"
    assert f["Progress"] == progress_bar(40)
    assert f["Status"] == "Generating"
    # 40 % after 40 s → 60 s to go, rounded down to 5 s.
    assert f"<t:{int((NOW + 60) // 5 * 5)}:R>" in f["Time"]
    assert embed.footer.text == "Job #7"


def test_eta_before_progress_uses_the_expected_time() -> None:
    job = make_job(status=JobStatus.QUEUED, progress=0, started_at=None)
    eta = estimate_finish(job, NOW, expected_seconds=120)
    assert eta == int((NOW + 120 - 59) // 5 * 5)


def test_rendering_is_pure_and_stable() -> None:
    job = make_job()
    assert job_embed(job, now=NOW).to_dict() == job_embed(job, now=NOW + 1).to_dict()


def test_failed_card_explains_and_says_nothing_was_charged() -> None:
    job = make_job(
        status=JobStatus.FAILED, error_message="The provider's safety system declined this prompt."
    )
    embed = job_embed(job, now=NOW)
    f = fields(embed)
    assert embed.colour is not None and embed.colour.value == 0xE74C3C
    assert "safety system" in f["What happened"]
    assert "Nothing was charged" in f["Credits"]
    assert "Progress" not in f


def test_completed_card() -> None:
    embed = job_embed(make_job(status=JobStatus.COMPLETED, progress=100, finished_at=NOW), now=NOW)
    assert embed.title == "🎬 Your video is ready"
    assert fields(embed)["Time"] == "Took 1 min 0 s"


def test_prompt_markdown_is_shown_literally() -> None:
    embed = job_embed(make_job(prompt="[free nitro](https://evil.example) **now**"), now=NOW)
    # The link can't form and the URL is broken by a zero-width space (bot.discord.text.inert).
    assert embed.description == r"\[free nitro\]\(https:" + "\u200b" + r"//evil.example\) \*\*now\*\*"


def test_long_prompt_is_clipped() -> None:
    embed = job_embed(make_job(prompt="x" * 5000), now=NOW)
    assert embed.description is not None and len(embed.description) == 1000


def test_repr_hides_the_interaction_token() -> None:
    assert "secret-token" not in repr(make_job())


def test_a_job_waiting_for_the_provider_shows_its_place_and_when_it_should_be_ready() -> None:
    waiting = make_job(status=JobStatus.PENDING, progress=0, provider_video_id=None, started_at=None)
    embed = job_embed(waiting, now=NOW, expected_seconds=40, queue=QueuePlace(12, NOW + 120))
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Place in line"] == (
        f"12th in line for the provider (first come, first served) · sent <t:{int(NOW + 120)}:R> (estimate)"
    )
    assert f"ready <t:{int(NOW + 160)}:R>" in str(fields["Time"])
    # Once sent, the place no longer shows.
    sent = replace(waiting, status=JobStatus.QUEUED, provider_video_id="video_1")
    embed = job_embed(sent, now=NOW, expected_seconds=40, queue=QueuePlace(12, NOW + 120))
    assert "Place in line" not in {f.name for f in embed.fields}


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (102, "102nd"),
    ],
)
def test_ordinals(n: int, text: str) -> None:
    assert ordinal(n) == text
