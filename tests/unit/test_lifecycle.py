"""The job lifecycle as data: the transition table, and the one deadline rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bot.domain.jobs import (
    ACTIVE_STATUSES,
    CANCELLABLE_STATUSES,
    FINAL_STATUSES,
    TRANSITIONS,
    JobChanges,
    JobStatus,
    Trigger,
    allowed_targets,
)
from tests.unit.test_embeds import make_job

S = JobStatus


def test_the_transition_table_is_the_documented_lifecycle() -> None:
    table = {t.value: (sorted(m.sources), sorted(m.targets)) for t, m in TRANSITIONS.items()}
    assert table == {
        "submit": (sorted([S.PENDING, S.SUBMITTING]), [S.SUBMITTING]),
        "accepted": ([S.SUBMITTING], [S.QUEUED]),
        "progress": (sorted([S.QUEUED, S.IN_PROGRESS]), sorted([S.QUEUED, S.IN_PROGRESS])),
        "completed": (sorted([S.QUEUED, S.IN_PROGRESS]), [S.DOWNLOADING]),
        "download": (sorted([S.DOWNLOADING, S.UPLOADING]), [S.UPLOADING]),
        "delivered": ([S.UPLOADING], [S.COMPLETED]),
        "back_to_waiting": ([S.DOWNLOADING], sorted([S.QUEUED, S.IN_PROGRESS])),
        "failed": (sorted(ACTIVE_STATUSES), [S.FAILED]),
        "cancelled": (sorted(CANCELLABLE_STATUSES), [S.CANCELLED]),
    }


def test_final_statuses_are_left_by_no_trigger_and_every_status_is_reachable() -> None:
    for status in FINAL_STATUSES:
        assert allowed_targets(status) == {}
    reachable = {S.PENDING} | {t for m in TRANSITIONS.values() for t in m.targets}
    assert reachable == set(JobStatus)
    # Once the provider has finished, the video is delivered, not cancelled.
    assert Trigger.CANCELLED not in allowed_targets(S.DOWNLOADING)
    assert Trigger.CANCELLED not in allowed_targets(S.UPLOADING)
    assert allowed_targets(S.UPLOADING) == {
        Trigger.DOWNLOADED: frozenset({S.UPLOADING}),
        Trigger.DELIVERED: frozenset({S.COMPLETED}),
        Trigger.FAILED: frozenset({S.FAILED}),
    }


def test_job_changes_name_columns_and_leave_the_rest() -> None:
    changes = JobChanges(status=S.FAILED, error_code="x", token_expires_at=0.0)
    assert changes.columns() == {"status": "failed", "error_code": "x", "token_expires_at": 0.0}


def test_one_deadline_rule_from_submission_or_acceptance() -> None:
    waiting = replace(make_job(status=S.PENDING), created_at=1000.0, submitted_at=None)
    assert waiting.deadline_at(60, 600) == 1000 + 60 + 600
    at_provider = replace(waiting, status=S.IN_PROGRESS, submitted_at=1100.0)
    assert at_provider.deadline_at(60, 600) == 1100 + 60
    posting = replace(at_provider, status=S.UPLOADING)
    assert posting.deadline_at(60, 600) == 1100 + 60 + 600


def test_only_the_lifecycle_changes_a_jobs_status() -> None:
    """The compare-and-set is the lifecycle's alone (the store defines it)."""
    root = Path(__file__).resolve().parents[2] / "bot"
    callers = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if ".transition(" in path.read_text(encoding="utf-8")
    )
    assert callers == ["services/lifecycle.py"]
