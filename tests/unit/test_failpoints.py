"""Crash points: inert in the product, armed only by the test launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.services import failpoints
from bot.services.failpoints import FailPoint, reached

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_hook_left_behind() -> Iterator[None]:
    yield
    failpoints.install(None)


def test_the_product_ignores_the_crash_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOBOT_CRASH_AT", FailPoint.BEFORE_CREATE.value)
    for point in FailPoint:
        reached(point)  # would SIGKILL this test process if the variable were read here


def test_an_installed_hook_sees_every_point_until_removed() -> None:
    seen: list[FailPoint] = []
    failpoints.install(seen.append)
    reached(FailPoint.AFTER_CREATE_BEFORE_STORE)
    reached(FailPoint.DURING_DOWNLOAD)
    failpoints.install(None)
    reached(FailPoint.AFTER_UPLOAD_BEFORE_RECORD)
    assert seen == [FailPoint.AFTER_CREATE_BEFORE_STORE, FailPoint.DURING_DOWNLOAD]


def launcher_hook(crash_at: str) -> subprocess.CompletedProcess[str]:
    """Arm the launcher's hook from the environment, then pass two points: one harmless, one armed."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "from tests.launcher import arm_from_environment\n"
        "from bot.services.failpoints import FailPoint, reached\n"
        "arm_from_environment()\n"
        "reached(FailPoint.DURING_DOWNLOAD)\n"
        "print('passed during_download', flush=True)\n"
        "reached(FailPoint.BEFORE_CREATE)\n"
        "print('passed before_create', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBOT_CRASH_AT": crash_at}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_launcher_sigkills_the_process_at_the_armed_point_only() -> None:
    result = launcher_hook("before_create")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.splitlines() == ["passed during_download"]
    assert "crash point 'before_create' reached" in result.stderr


def test_the_launcher_refuses_an_unknown_crash_point_in_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBOT_CRASH_AT": "after_lunch"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.launcher", "run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "'after_lunch' is not a crash point" in line
    assert all(point.value in line for point in FailPoint)
