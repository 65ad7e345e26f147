"""The failure card says what the failure cost, following the job's charge state."""

from __future__ import annotations

from bot.discord.embeds import job_embed
from bot.domain.jobs import ChargeState, JobStatus
from tests.unit.test_embeds import NOW, make_job


def credits_field(**changes: object) -> str:
    job = make_job(status=JobStatus.FAILED, error_code="moderation_blocked", **changes)
    fields = {f.name: f.value for f in job_embed(job, now=NOW).fields}
    return str(fields["Credits"])


def test_a_refunded_failure_says_nothing_was_charged() -> None:
    assert credits_field(charge_state=ChargeState.REFUNDED) == "Nothing was charged for this video."


def test_a_charged_moderation_block_says_it_was_charged() -> None:
    text = credits_field(charge_state=ChargeState.CHARGED)
    assert text.startswith("4 credits charged")
    assert "Nothing was charged" not in text
