"""Every place the bot shows member-typed text uses ``bot.discord.text``: the ``/videos`` and
``/quota`` lines, the moderators' job list, ``/remix``'s choices, the "Remix of" snippet, Details,
a provider's error message, an attachment's filename, and the usage CSV.

Each test puts a hostile prompt through the real rendering function and reads the result with the
same checker as ``test_member_text`` (Discord's rendering rules)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from types import SimpleNamespace

import discord
import pytest

from bot.discord.cogs.credits import job_line
from bot.discord.cogs.history import choice_name
from bot.discord.cogs.video import _precheck_attachment
from bot.discord.embeds import job_embed, lineage_text
from bot.discord.text import ZWSP
from bot.discord.views import details_embed, videos_line
from bot.domain.credits import MemberUsage, ModelUsage, UsageReport
from bot.domain.errors import UserError
from bot.domain.jobs import ChargeState, JobStatus
from bot.services.credits import usage_csv
from tests.unit.test_embeds import NOW, make_job
from tests.unit.test_member_text import live_markup, rendered

HOSTILE = (
    "a fox at [dawn](https://ok.example) — [Claim your Nitro](https://evil.example/login) "
    "<https://evil.example> @everyone <@123>\n# heading\n> quote ||spoiler|| `code`"
)
ONE_LINE = " ".join(HOSTILE.split())


def assert_inert_clip(shown: str) -> None:
    """``shown`` renders no markup, no URL and no mass mention, and reads as the start of the
    prompt folded onto one line."""
    assert live_markup(shown) == [], shown
    assert "://" not in shown and "@everyone" not in shown
    text = rendered(shown)
    assert ONE_LINE.startswith(text.removesuffix("…")), text


def test_videos_line_shows_the_prompt_inert() -> None:
    line = videos_line(make_job(id=9, prompt=HOSTILE, reply_message_id=None))
    status, cost, prompt = line.split(" · ", 2)
    assert status == "`#9` Generating" and cost == "4 credits reserved"
    assert_inert_clip(prompt)
    assert "\n" not in line


def test_moderators_job_line_shows_the_prompt_inert() -> None:
    line = job_line(make_job(id=9, prompt=HOSTILE, reply_message_id=None))
    *_, prompt = line.split(" cr · ", 1)
    assert line.startswith("`#9` Generating · <@3> · 4 cr · ")
    assert_inert_clip(prompt)
    assert "\n" not in line


def test_remix_choices_are_plain_within_discord_s_limit() -> None:
    # Choice names render no Markdown: no backslashes there, only URLs and mentions broken.
    name = choice_name(make_job(id=12, prompt=HOSTILE))
    assert len(name) <= 100 and name.startswith("#12 · 4 s · a fox at [dawn](https:" + ZWSP + "//ok.example)")
    assert "\\" not in name and "\n" not in name
    assert "://" not in name and "@everyone" not in name


def test_the_remix_of_snippet_is_inert() -> None:
    source = make_job(id=5, prompt=HOSTILE, reply_message_id=7)
    text = lineage_text(make_job(source_job_id=5), source)
    link, snippet = text.split(": ", 1)
    assert link == "[Job #5](https://discord.com/channels/1/2/7)"  # the bot's own link stays
    assert_inert_clip(snippet)


def test_details_show_the_whole_prompt_inert_on_its_lines() -> None:
    embed = details_embed(make_job(prompt=HOSTILE))
    assert embed.description is not None
    assert live_markup(embed.description) == [], embed.description
    assert rendered(embed.description) == HOSTILE
    long = details_embed(make_job(prompt=HOSTILE * 60))
    assert long.description is not None and long.description.endswith("… (the full prompt is attached)")
    assert live_markup(long.description.removesuffix(" (the full prompt is attached)")) == []
    assert len(long) <= 6000


@pytest.mark.parametrize("render", [job_embed, details_embed], ids=["card", "details"])
def test_a_provider_error_that_quotes_the_prompt_is_inert(render: object) -> None:
    failed = make_job(
        status=JobStatus.FAILED, charge_state=ChargeState.REFUNDED, error_message=f"Rejected: {HOSTILE}"
    )
    embed = render(failed, now=NOW) if render is job_embed else details_embed(failed)  # type: ignore[operator]
    (what,) = [f.value for f in embed.fields if f.name == "What happened"]
    assert live_markup(what) == [] and "://" not in what
    assert rendered(what) == f"Rejected: {HOSTILE}"


def test_an_attachment_filename_in_a_refusal_is_inert() -> None:
    filename = "`a`[free](https://evil.example) @everyone.pdf"
    attachment = discord.Attachment(
        data={
            "id": 1,
            "filename": filename,
            "size": 100,
            "url": "https://cdn.discordapp.com/attachments/1/1/a.pdf",
            "proxy_url": "https://media.discordapp.net/attachments/1/1/a.pdf",
            "content_type": "application/pdf",
        },
        state=SimpleNamespace(http=None),  # type: ignore[arg-type]  # no download in this test
    )
    with pytest.raises(UserError) as refused:
        _precheck_attachment(attachment)
    message = refused.value.user_message
    assert live_markup(message) == [], message
    assert rendered(message) == f"{filename} isn't an image. Attach a JPEG, PNG or WebP."


def test_the_usage_csv_defuses_formulas_and_keeps_numbers() -> None:
    report = UsageReport(
        by_model=(
            ModelUsage('=HYPERLINK("https://evil.example","x")', "completed", "charged", 2, 8, 8, 0.8),
        ),
        top_members=(MemberUsage(42, "@everyone", 2, 8, 8, 0.8),),
    )
    rows = list(csv.reader(io.StringIO(usage_csv(report))))
    assert rows[1][:2] == ["model", '\'=HYPERLINK("https://evil.example","x")']
    assert rows[1][4:] == ["2", "8", "8", "0.80"]
    assert rows[2][:2] == ["member", "42"]
    minus = replace(report.by_model[0], model="-1+1")
    assert list(csv.reader(io.StringIO(usage_csv(replace(report, by_model=(minus,))))))[1][1] == "'-1+1"
