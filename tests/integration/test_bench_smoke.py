"""``bench/run.py --quick --members 5`` runs all three modes and prints one JSON document of the
documented shape (the figures themselves are for people; only their presence is checked here)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODES = ("bot_webhooks_off", "bot_webhooks_on", "naive_baseline")
PER_MODE_KEYS = {
    "jobs",
    "delivered",
    "videos_api_requests",
    "videos_api_requests_per_job",
    "status_requests_per_job",
    "discord_requests",
    "discord_requests_per_job",
    "discord_429s",
    "ack_latency_ms",
    "completion_to_upload_start_ms",
    "peak_rss_mb",
    "cpu_seconds",
}


async def test_quick_benchmark_prints_one_json_document() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "bench" / "run.py"),
        "--quick",
        "--members",
        "5",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-4000:]
    report = json.loads(stdout)  # exactly one document: nothing else on stdout

    assert report["conditions"]["members"] == 5
    assert set(report["modes"]) == set(MODES)
    for name in MODES:
        mode = report["modes"][name]
        assert set(mode) >= PER_MODE_KEYS, name
        assert mode["jobs"] == 5 and mode["delivered"] == 5, (name, mode)
        assert mode["videos_api_requests"]["by_endpoint"]["create"] == 5
        assert mode["videos_api_requests"]["by_endpoint"]["content"] == 5
        for latency in ("ack_latency_ms", "completion_to_upload_start_ms"):
            assert set(mode[latency]) == {"p50", "p99", "max"}
            assert mode[latency]["p50"] is not None and mode[latency]["p50"] >= 0, (name, latency)
        assert mode["peak_rss_mb"] > 10 and mode["cpu_seconds"] > 0
    assert set(report["ratios"]) == {"naive_baseline/bot_webhooks_off", "naive_baseline/bot_webhooks_on"}
    assert "status_requests_per_job_webhooks_on" in report["targets"]
