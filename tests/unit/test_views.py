"""Job buttons, the remix form and the ``/videos`` pager: custom_id round trips, who may press what,
and the pure rendering behind them."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.adapters.sql.history import SqlHistoryRepository
from bot.adapters.sqlite.store import Store
from bot.discord.embeds import job_embed, message_link, remix_source_gone
from bot.discord.views import (
    DYNAMIC_ITEMS,
    AgainButton,
    CancelButton,
    DetailsButton,
    EditButton,
    EditForm,
    ExtendButton,
    ExtendForm,
    JobAction,
    JobButtons,
    RemixButton,
    RemixForm,
    VideosPageButton,
    details_embed,
    job_action_refusal,
    videos_line,
    videos_page_view,
)
from bot.domain.jobs import ChargeState, Job, JobRequest, JobStatus
from bot.domain.messages import REMIX_SOURCE_GONE, REMIX_SOURCE_GONE_CODE
from bot.domain.messages import remix_source_gone as core_remix_source_gone
from bot.domain.provider_errors import BadRequest, NotFound, VideoAPIError
from tests.unit.test_embeds import NOW, make_job

OWNER = 3  # make_job's user_id
STRANGER = 99


def completed(**changes: Any) -> Job:
    values: dict[str, Any] = {
        "status": JobStatus.COMPLETED,
        "charge_state": ChargeState.CHARGED,
        "progress": 100,
        "finished_at": NOW,
        "delivered_message_id": 11,
    }
    values.update(changes)
    return make_job(**values)


def refused_remix(code: str, message: str) -> Job:
    return make_job(
        status=JobStatus.FAILED,
        charge_state=ChargeState.REFUNDED,
        provider_video_id=None,
        remixed_from_video_id="video_source",
        source_job_id=5,
        error_code=code,
        error_message=message,
    )


def labels(view: discord.ui.View | None) -> list[str | None]:
    assert view is not None
    return [item.to_component_dict().get("label") for item in view.children]


def custom_ids(view: discord.ui.View) -> list[str]:
    return [str(item.to_component_dict()["custom_id"]) for item in view.children]


# -- custom_id templates --------------------------------------------------------------------------


@pytest.mark.parametrize("button", [RemixButton, AgainButton, DetailsButton, CancelButton])
async def test_job_buttons_round_trip_their_job_through_the_custom_id(button: type[Any]) -> None:
    shown = button(1234567)
    match = button.__discord_ui_compiled_template__.fullmatch(shown.custom_id)
    assert match is not None
    rebuilt = await button.from_custom_id(None, shown.item, match)
    assert rebuilt.job_id == 1234567 and rebuilt.custom_id == shown.custom_id
    assert shown.custom_id.startswith("videobot:") and len(shown.custom_id) <= 100


async def test_pager_button_round_trips_owner_and_page() -> None:
    shown = VideosPageButton(987654321987654321, 3, label="Next ▶")
    match = VideosPageButton.__discord_ui_compiled_template__.fullmatch(shown.custom_id)
    assert match is not None
    rebuilt = await VideosPageButton.from_custom_id(None, shown.item, match)
    assert (rebuilt.owner_id, rebuilt.page) == (987654321987654321, 3)


def test_templates_never_claim_each_others_ids() -> None:
    ids = [
        RemixButton(1).custom_id,
        ExtendButton(1).custom_id,
        EditButton(1).custom_id,
        AgainButton(1).custom_id,
        DetailsButton(1).custom_id,
        CancelButton(1).custom_id,
        VideosPageButton(1, 1).custom_id,
        RemixForm(1, 2).custom_id,
        ExtendForm(1, 2, (4, 8)).custom_id,
        EditForm(1, 2).custom_id,
    ]
    for item in DYNAMIC_ITEMS:
        template: re.Pattern[str] = item.__discord_ui_compiled_template__
        assert sum(1 for custom_id in ids if template.fullmatch(custom_id)) == 1


def test_remix_form_is_unique_per_opening_and_keeps_the_job() -> None:
    first, second = RemixForm(12, 1001), RemixForm(12, 1002)
    assert first.custom_id != second.custom_id
    assert first.job_id == 12 and first.title == "Remix video #12"
    assert first.timeout is not None  # forms nobody submits are forgotten


def test_pager_disables_what_leads_nowhere() -> None:
    only = videos_page_view(7, 1, 1)
    assert [item.to_component_dict().get("disabled") for item in only.children] == [True, True]
    middle = videos_page_view(7, 2, 3)
    assert custom_ids(middle) == ["videobot:videos:7:1", "videobot:videos:7:3"]
    assert [item.to_component_dict().get("disabled") for item in middle.children] == [False, False]
    assert middle.timeout is None  # a timed-out view would unregister the dynamic items


# -- who may press what ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(JobAction))
def test_strangers_are_refused_every_job_button_and_told_whose_it_is(action: JobAction) -> None:
    job = completed() if action is not JobAction.CANCEL else make_job()
    refusal = job_action_refusal(action, job, actor_id=STRANGER, is_moderator=False)
    assert refusal is not None
    assert refusal.startswith(f"This is <@{OWNER}>'s video: only they or a moderator can ")
    assert job_action_refusal(action, job, actor_id=OWNER, is_moderator=False) is None
    assert job_action_refusal(action, job, actor_id=STRANGER, is_moderator=True) is None


def test_state_refusals_come_after_ownership() -> None:
    running = make_job()
    assert "Only finished videos can be remixed" in str(
        job_action_refusal(JobAction.REMIX, running, actor_id=OWNER, is_moderator=False)
    )
    uploading = make_job(status=JobStatus.UPLOADING)  # the card already shows the video
    assert job_action_refusal(JobAction.REMIX, uploading, actor_id=OWNER, is_moderator=False) is None
    done = completed()
    assert "already finished (done)" in str(
        job_action_refusal(JobAction.CANCEL, done, actor_id=OWNER, is_moderator=False)
    )
    # A stranger hears that the job isn't theirs, not something about its state.
    assert "only they or a moderator" in str(
        job_action_refusal(JobAction.CANCEL, done, actor_id=STRANGER, is_moderator=False)
    )
    gone = refused_remix(REMIX_SOURCE_GONE_CODE, REMIX_SOURCE_GONE)
    assert "can't be made again" in str(
        job_action_refusal(JobAction.AGAIN, gone, actor_id=OWNER, is_moderator=False)
    )
    no_video = completed(provider_video_id=None)
    assert "no video at the provider" in str(
        job_action_refusal(JobAction.REMIX, no_video, actor_id=OWNER, is_moderator=False)
    )


# -- which buttons a job shows --------------------------------------------------------------------


def test_buttons_follow_the_job_state() -> None:
    buttons = JobButtons()
    assert labels(buttons.progress_view(make_job())) == ["Cancel"]
    assert labels(buttons.result_view(completed())) == ["Remix", "Again", "Details"]
    failed = make_job(status=JobStatus.FAILED, error_message="The provider is busy.")
    assert labels(buttons.result_view(failed)) == ["Again", "Details"]
    gone = refused_remix(REMIX_SOURCE_GONE_CODE, REMIX_SOURCE_GONE)
    assert labels(buttons.result_view(gone)) == ["Details"]
    other_refusal = refused_remix("BadRequest", "The video provider refused the request: prompt too long")
    assert labels(buttons.result_view(other_refusal)) == ["Again", "Details"]
    assert buttons.result_view(make_job(status=JobStatus.CANCELLED)) is None
    view = buttons.result_view(completed(id=42))
    assert view is not None and view.timeout is None
    assert custom_ids(view) == ["videobot:remix:42", "videobot:again:42", "videobot:details:42"]


# -- lineage and refused remixes ------------------------------------------------------------------


def test_remix_card_links_to_the_source_message() -> None:
    source = completed(id=5, prompt="a red fox *in* snow", delivered_message_id=555)
    remix = make_job(id=6, source_job_id=5, remixed_from_video_id="video_1")
    value = {f.name: f.value for f in job_embed(remix, now=NOW, source=source).fields}["Remix of"]
    assert value == r"[Job #5](https://discord.com/channels/1/2/555): a red fox \*in\* snow"
    # Without the source row the card still says where it came from.
    alone = {f.name: f.value for f in job_embed(remix, now=NOW).fields}["Remix of"]
    assert alone == "Job #5"
    assert "Remix of" not in {f.name for f in job_embed(make_job(), now=NOW).fields}


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        (NotFound("Video with id 'x' not found.", status=404), True),
        (BadRequest("The assets of video 'x' have expired", status=400), True),
        (BadRequest("video is deleted", status=400, code="invalid_video_status"), True),
        (BadRequest("prompt too long", status=400), False),
        (BadRequest("blocked", status=400, code="moderation_blocked"), False),
    ],
)
def test_a_provider_refusal_is_classified_as_source_gone_or_not(error: VideoAPIError, gone: bool) -> None:
    assert core_remix_source_gone(error) is gone


def test_a_refused_remix_of_a_gone_source_reads_plainly() -> None:
    job = refused_remix(REMIX_SOURCE_GONE_CODE, REMIX_SOURCE_GONE)
    assert remix_source_gone(job)
    card = {f.name: f.value for f in job_embed(job, now=NOW).fields}
    assert card["What happened"] == REMIX_SOURCE_GONE
    assert "Nothing was charged" in card["Credits"]
    assert not remix_source_gone(replace(job, error_code="BadRequest"))


# -- details and the /videos list -----------------------------------------------------------------


def test_details_show_everything_and_attach_long_prompts() -> None:
    job = completed(prompt="p" * 5000, reference_image_path="/data/references/x.png")
    embed = details_embed(job)
    fields = {f.name: f.value for f in embed.fields}
    assert embed.description is not None and embed.description.endswith("(the full prompt is attached)")
    assert len(embed) <= 6000
    assert fields["Provider video id"] == "`video_1`"
    assert fields["Cost"] == "4 credits (~$0.40)"
    assert fields["Model"] == "`sora-2`" and fields["Size"] == "720x1280" and fields["Duration"] == "4 s"
    assert f"Requested: <t:{int(NOW - 60)}:f>" in fields["Timings"] and "Took 1 min 0 s" in fields["Timings"]
    assert embed.url == message_link(job)
    short = details_embed(make_job(provider_video_id=None))
    assert short.description == "a red fox running through snow @\u200beveryone"  # inert, no highlight
    assert {f.name: f.value for f in short.fields}["Provider video id"] == "not sent to the provider"


def test_videos_line_has_status_cost_prompt_and_link() -> None:
    line = videos_line(completed(id=9, prompt="a *bold*\nfox"))
    assert line == r"`#9` Done · 4 credits · a \*bold\* fox · [open](https://discord.com/channels/1/2/11)"
    refunded = videos_line(make_job(status=JobStatus.FAILED, charge_state=ChargeState.REFUNDED))
    assert "4 credits, not charged" in refunded


# -- the videos /remix offers ---------------------------------------------------------------------


async def test_remixable_videos_are_the_members_own_finished_ones(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "jobs.db") as store:

        async def add(user_id: int, prompt: str, status: JobStatus, video: str | None) -> int:
            request = JobRequest(
                guild_id=1,
                channel_id=2,
                user_id=user_id,
                user_name="x",
                prompt=prompt,
                model="sora-2",
                size="720x1280",
                seconds=4,
                cost=4,
                usd=0.4,
            )
            job_id = await store.insert_job(request)
            await store.update_job(job_id, status=status, provider_video_id=video)
            return job_id

        fox = await add(OWNER, "a red fox", JobStatus.COMPLETED, "video_a")
        percent = await add(OWNER, "100% fox_like", JobStatus.COMPLETED, "video_b")
        await add(OWNER, "a failed fox", JobStatus.FAILED, None)
        await add(STRANGER, "their fox", JobStatus.COMPLETED, "video_c")
        many = [await add(OWNER, f"clip {i}", JobStatus.COMPLETED, f"video_m{i}") for i in range(30)]

        history = SqlHistoryRepository(store)
        offered = await history.remixable_videos(1, OWNER)
        assert [job.id for job in offered] == sorted([fox, percent, *many], reverse=True)[:25]
        assert [job.id for job in await history.remixable_videos(1, OWNER, typed="FOX")] == [percent, fox]
        # LIKE wildcards the member types are literal characters.
        assert [job.id for job in await history.remixable_videos(1, OWNER, typed="0%")] == [percent]
        assert [job.id for job in await history.remixable_videos(1, OWNER, typed="x_l")] == [percent]
        by_number = [job.id for job in await history.remixable_videos(1, OWNER, typed=f"#{fox}")]
        assert fox in by_number and all(str(job_id).startswith(str(fox)) for job_id in by_number)
        assert await history.remixable_videos(2, OWNER) == []
