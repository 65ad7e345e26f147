"""The provider budget over real HTTP: finished videos are downloaded before queued submissions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.adapters.media import probe_video
from bot.adapters.videoapi.client import VideoAPIClient
from bot.services.ratelimit import ProviderBudget, RequestKind
from tests.fakes.provider import InstrumentedRenderer


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    return {"generation_seconds": 0.3, "queue_seconds": 0.0, "fps": 4, "poll_after_ms": 50}


def kind_of(method: str, path: str) -> str:
    if path.endswith("/content"):
        return "download"
    return "create" if method == "POST" else "status"


async def test_downloads_and_status_go_before_queued_creates(
    renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    async with VideoAPIClient(renderer.base_url, SecretStr("sk-test"), backoff_initial=0.01) as client:
        finished = await client.create(prompt="a finished fox", model="sora-2", size="720x1280", seconds=4)
        await renderer.wait_rendered(finished.id)
        # A tight budget: 60 a minute (one token a second; a queued create needs three in the bucket,
        # so the download, even retried, has two seconds, far longer than it takes on a busy
        # machine), bursts of 4, two kept for reads.
        client.budget = ProviderBudget(60, burst=4)
        renderer.requests.clear()
        creates = [
            asyncio.create_task(client.create(prompt=f"fox {n}", model="sora-2", size="720x1280", seconds=4))
            for n in range(5)
        ]
        await asyncio.sleep(0)  # the burst of submissions is in the budget's queue first
        assert client.budget.waiting(RequestKind.SUBMIT) == 3
        out = tmp_path / "fox.mp4"
        size = await client.download(finished.id, out)
        status = await client.retrieve(finished.id)  # the second reserved token, ahead of the creates
        assert status.status == "completed"
        await asyncio.gather(*creates)
    order = [kind_of(r.method, r.path) for r in renderer.requests]
    # Two creates went at once (in any order with the download); the download (with its retry, if
    # a busy machine made it need one) and the status check overtook the three queued ones.
    assert order.count("create") == 5 and order.count("status") == 1, order
    third_create = [n for n, kind in enumerate(order) if kind == "create"][2]
    assert order[third_create:] == ["create"] * 3, order
    assert size == out.stat().st_size and probe_video(out).codec == "h264"
