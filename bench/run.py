"""Benchmark: the real bot process against the naive approach, offline, and print ONE JSON document.

Without workload flags it runs the issue's three workloads one after another, then a scale point
(see ``WORKLOADS``; ``--workload NAME`` runs one, ``--scale-3000`` adds 3,000 in flight):

- ``burst``: 100 members in 5 channels at once, 30 s generations, progress every 3 s;
- ``sustained``: 200 members in 10 channels arriving 4/s, 60 s generations, progress every 5 s;
- ``thousand``: 1,000 members in 50 channels arriving 10/s, 60 s generations, the provider budget
  raised to 3,000/min (the naive baseline is not run here);
- ``scale-200`` / ``scale-3000``: the bot (webhooks off) with the raised budget, for the scale curve.

Every workload: 3 MiB MP4s, Discord's limits in the fake (per channel 5 writes per 5 s, per
interaction token 5 per 2 s, global 50 per s for bot-token routes), the renderer suggesting
``openai-poll-after-ms: 2000``. The renderer serves one pre-rendered 3 MiB MP4 (hard links) instead
of drawing a thousand of them; generation time is not compressed (a 60 s job takes 60 s), progress
moves in steps of the workload's interval.

Every mode runs the same workload against a fresh fake Discord (``tests/fakes/discord/``,
with Discord-like rate limits switched on) and a fresh local renderer (``bot/videoapi/local.py``) in
this process; the bot under test is a separate process, so its memory and CPU are its own:

- ``bot_webhooks_off``: ``python -m bot run`` with its default tuning, status by polling only;
- ``bot_webhooks_on``: the same with ``HTTP_PORT`` + ``WEBHOOK_SECRET``, the renderer sending signed
  ``video.completed`` / ``video.failed`` events to ``/webhooks/videos``;
- ``naive_baseline``: ``bench/naive_bot.py`` (real discord.py too), which polls every job every second
  and edits its reply on every poll, as in the provider documentation's example;
- ``big_downloads`` (``--big-downloads``): the bot with webhooks and 20 of the jobs making ~22 MB files
  that finish together, downloaded 20 at a time (``MAX_CONCURRENT_DELIVERIES=20``).

``--members`` members spread over ``--channels`` channels each run ``/video`` once, at an even pace over
``--arrival-seconds``; every job takes ``--generation-seconds`` at the provider (real time, nothing is
compressed). See README.md, "Benchmark", for what each figure means.

Run ``python bench/run.py`` (about 4 minutes with the defaults), ``--quick`` for a short smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py` puts bench/, not the repository, on the path
    sys.path.insert(0, str(REPO))

import resource  # noqa: E402
import shutil  # noqa: E402

from aiohttp import web  # noqa: E402
from aiohttp.typedefs import Handler, Middleware  # noqa: E402

import bot.localapi.jobs as renderer_jobs  # noqa: E402
import bot.localapi.server as renderer_server  # noqa: E402
from bot.localapi import LocalRenderer, LocalRendererConfig  # noqa: E402
from bot.localapi.rendering import ASSETS  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes.discord import (  # noqa: E402
    ROUTE_CALLBACK,
    ROUTE_CHANNEL_MESSAGE,
    ROUTE_CHANNEL_MESSAGES,
    FakeDiscord,
    InteractionHandle,
    RecordedRequest,
)
from tests.fakes.provider import wait_rendered  # noqa: E402

Mode = Literal["bot_webhooks_off", "bot_webhooks_on", "naive_baseline", "big_downloads"]

MODEL: Final = "sora-2"
SMALL_SIZE: Final = "320x240"
BIG_SIZE: Final = "720x1280"
SMALL_SECONDS: Final = 4
BIG_SECONDS: Final = 8
# Small frames and a low frame rate keep the renderer (which shares this machine's 2 cores with the
# bot under test) cheap; the bot's traffic does not depend on the picture.
RENDER_FPS: Final = 4
# With noise the encoder can't compress: 8 s at 19 Mbit/s comes out at ~22 MB (the encoder overshoots
# its target a little), over the 20 MB asked for and under the 25 MiB upload limit, so nothing is
# re-encoded and the scenario measures downloads and uploads only.
BIG_TARGET_BITRATE: Final = 19_000_000
BIG_JOBS: Final = 20
# A level-2 boosted server's limit, so the ~22 MB files are uploaded as they are (no re-encode).
BOOSTED_UPLOAD_LIMIT: Final = 25 * 1024 * 1024
CHANNEL_MESSAGE_LIMIT: Final = (5, 5.0)  # Discord: 5 message creates/edits per 5 s per channel
WEBHOOK_MESSAGE_LIMIT: Final = (5, 2.0)  # 5 per 2 s per interaction token
GLOBAL_LIMIT: Final = (50, 1.0)  # 50 per s for every bot-token request (interaction routes exempt)
VIDEO_BYTES: Final = 3 * 1024 * 1024  # the issue's 3 MiB MP4s
VIDEO_SIZE: Final = "720x1280"  # big frames with grain, so 4 s at ~6 Mbit/s really is 3 MiB
RAISED_RPM: Final = 3000
# The bot's tuning knobs whose defaults the bench runs with (reported, never overridden; the request
# budget is set from --provider-rpm and reported with the workload).
TUNING: Final = (
    "poll_interval_seconds",
    "webhook_safety_sweep_seconds",
    "progress_edit_interval_seconds",
    "max_concurrent_submissions",
    "max_concurrent_deliveries",
)
STARTUP_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")

BENCH_CATALOG: Final = f"""\
# The default catalog's sora-2 with two bench sizes: {SMALL_SIZE} (cheap to render) and {BIG_SIZE}.
default_model = "{MODEL}"

[[models]]
name = "{MODEL}"
label = "Sora 2 (bench)"
seconds = [{SMALL_SECONDS}, {BIG_SECONDS}]
default_size = "{SMALL_SIZE}"
seconds_per_video_second = 15

[[models.rates]]
sizes = ["{SMALL_SIZE}", "{BIG_SIZE}"]
credits_per_second = 1
usd_per_second = 0.10
"""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Workload:
    members: int
    channels: int
    generation_seconds: float
    arrival_seconds: float
    provider_latency_ms: float
    poll_after_ms: int | None
    provider_requests_per_minute: int
    big_jobs: int = 0
    progress_step_seconds: float = 0.0  # the renderer's progress moves in steps this long (0: smoothly)
    naive: bool = True  # the naive baseline runs in this workload
    video_bytes: int = 0  # 0: small, quickly rendered videos (--quick and the legacy flags)

    @property
    def queue_seconds(self) -> float:
        # Providers report "queued" for a while before "in_progress"; a tenth of the job is typical.
        return round(self.generation_seconds * 0.1, 3)

    def delivery_allowance_seconds(self) -> float:
        """How long after the first arrival the bench waits for the last delivery.

        The arrivals and one generation, plus three minutes; but never less than the provider budget
        needs for every job's create and download (two requests each; the bot spends a little more
        on status): with the default 120/min, 200 jobs need 400 requests, 200 s of budget, so the
        last create is sent about 200 s in whatever the arrival pace, and its video is ready a
        generation later. A deadline below that would count budget-bound jobs as lost."""
        budget_bound = self.members * 2 * 60 / max(1, self.provider_requests_per_minute)
        return max(self.arrival_seconds, budget_bound) + self.generation_seconds + 180

    def describe(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "channels": self.channels,
            "jobs": self.members,
            "big_jobs": self.big_jobs,
            "generation_seconds": self.generation_seconds,
            "queue_seconds": self.queue_seconds,
            "arrival_seconds": self.arrival_seconds,
            "provider_latency_ms": self.provider_latency_ms,
            "provider_poll_after_ms": self.poll_after_ms,
            "provider_requests_per_minute": self.provider_requests_per_minute,
            "progress_step_seconds": self.progress_step_seconds,
            "video_bytes": self.video_bytes,
        }


def named(
    members: int,
    channels: int,
    generation: float,
    per_second: float | None,
    step: float,
    rpm: int,
    naive: bool,
) -> Workload:
    return Workload(
        members=members,
        channels=channels,
        generation_seconds=generation,
        arrival_seconds=0.0 if per_second is None else members / per_second,
        provider_latency_ms=50.0,
        poll_after_ms=2000,
        provider_requests_per_minute=rpm,
        progress_step_seconds=step,
        naive=naive,
        video_bytes=VIDEO_BYTES,
    )


DEFAULT_RPM: Final = int(Settings.model_fields["video_api_requests_per_minute"].default)
WORKLOADS: Final[dict[str, Workload]] = {
    "burst": named(100, 5, 30.0, None, 3.0, DEFAULT_RPM, naive=True),
    "sustained": named(200, 10, 60.0, 4.0, 5.0, DEFAULT_RPM, naive=True),
    "thousand": named(1000, 50, 60.0, 10.0, 5.0, RAISED_RPM, naive=False),
    # Scale curve (webhooks off, budget raised): 200 arrive at 20/s, 3,000 at 30/s, 60 s jobs.
    "scale-200": named(200, 10, 60.0, 20.0, 5.0, RAISED_RPM, naive=False),
    "scale-3000": named(3000, 150, 60.0, 30.0, 5.0, 10 * RAISED_RPM, naive=False),
}
DEFAULT_RUN: Final = ("burst", "sustained", "thousand", "scale-200")


# --------------------------------------------------------------------------- the provider's videos


@dataclass
class ProviderShape:
    """What the renderer in this process serves (module-level patches of the local renderer, made
    once; the bench is its only user in this process)."""

    step_seconds: float = 0.0
    prerendered: Path | None = None


SHAPE: Final = ProviderShape()
_original_state_at = renderer_jobs.state_at
_original_render_assets = renderer_jobs.render_assets


def stepped_state_at(job: Any, config: LocalRendererConfig, now: float) -> Any:
    """The renderer's state, with progress that moves every ``SHAPE.step_seconds`` (as a provider
    that reports progress on a schedule) instead of on every request."""
    state = _original_state_at(job, config, now)
    step = SHAPE.step_seconds
    if state.status != "in_progress" or step <= 0:
        return state
    started = job.created_at + config.queue_seconds
    stepped = started + math.floor((now - started) / step) * step
    return _original_state_at(job, config, max(stepped, started))


def prerendered_assets(directory: Path, **kwargs: Any) -> int:
    """Hard-link the pre-rendered files instead of rendering (``render_assets`` otherwise)."""
    source = SHAPE.prerendered
    if source is None:
        return int(_original_render_assets(directory, **kwargs))
    directory.mkdir(parents=True, exist_ok=True)
    size = 0
    for asset in ASSETS.values():
        target_path = directory / asset.filename
        try:
            os.link(source / asset.filename, target_path)
        except OSError:
            shutil.copyfile(source / asset.filename, target_path)
        size += target_path.stat().st_size
    return size


def prerender(directory: Path, video_bytes: int) -> Path:
    """One ~``video_bytes`` MP4 (plus thumbnail and spritesheet) every job will serve."""
    seconds = SMALL_SECONDS
    _original_render_assets(
        directory,
        prompt="bench: a paper boat drifting down a rainy street",
        width=int(VIDEO_SIZE.split("x")[0]),
        height=int(VIDEO_SIZE.split("x")[1]),
        seconds=float(seconds),
        fps=8,
        use_reference=False,
        noise=True,
        target_bitrate=int(video_bytes * 8 / seconds),
    )
    return directory


renderer_jobs.state_at = stepped_state_at
renderer_server.state_at = stepped_state_at
renderer_jobs.render_assets = prerendered_assets


@dataclass
class JobRecord:
    index: int
    prompt: str
    channel_id: int
    dispatched_at: float
    handle: InteractionHandle


@dataclass
class VideoRecord:
    """A provider job as seen by the counting middleware (times on the renderer's clock, time.time)."""

    video_id: str
    created_at: float
    rendered_at: float | None = None


@dataclass
class ProviderLog:
    """Counts every request the renderer answers; the renderer's own request log is capped at 10,000
    entries, which the naive baseline overflows."""

    generation_seconds: float
    by_endpoint: Counter[str] = field(default_factory=Counter)
    videos_by_prompt: dict[str, VideoRecord] = field(default_factory=dict)
    content_started_at: dict[str, float] = field(default_factory=dict)  # video id → first download
    watchers: set[asyncio.Task[None]] = field(default_factory=set)

    def completed_at(self, prompt: str) -> float | None:
        """When the renderer started reporting ``completed``: the generation time has passed and the
        file is rendered (the same rule as the renderer's own, which rounds it to whole seconds)."""
        video = self.videos_by_prompt.get(prompt)
        if video is None or video.rendered_at is None:
            return None
        return max(video.created_at + self.generation_seconds, video.rendered_at)


def endpoint_of(method: str, path: str) -> str:
    parts = path.removeprefix("/v1/").strip("/").split("/")
    if parts[0] != "videos":
        return f"{method} other"
    if len(parts) == 1:
        return {"POST": "create", "GET": "list"}.get(method, f"{method} videos")
    if len(parts) == 2:
        return {"GET": "retrieve", "DELETE": "delete"}.get(method, f"{method} video")
    return {"content": "content", "remix": "remix"}.get(parts[2], f"{method} {parts[2]}")


def provider_log_middleware(provider_log: ProviderLog, renderer: Callable[[], LocalRenderer]) -> Middleware:
    """A middleware for the renderer that counts its requests and times each video's render."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        received_at = time.time()
        endpoint = endpoint_of(request.method, request.path)
        provider_log.by_endpoint[endpoint] += 1
        if endpoint == "content":
            video_id = request.path.removeprefix("/v1/videos/").removesuffix("/content")
            provider_log.content_started_at.setdefault(video_id, received_at)
        response = await handler(request)
        if endpoint == "create" and isinstance(response, web.Response) and response.status == 200:
            assert isinstance(response.body, bytes)
            video = json.loads(response.body)
            record = VideoRecord(video_id=video["id"], created_at=received_at)
            provider_log.videos_by_prompt[video["prompt"]] = record
            watcher = asyncio.create_task(watch_render(renderer(), record))
            provider_log.watchers.add(watcher)
            watcher.add_done_callback(provider_log.watchers.discard)
        return response

    return count


async def watch_render(renderer: LocalRenderer, record: VideoRecord) -> None:
    with contextlib.suppress(TimeoutError):
        await wait_rendered(renderer, record.video_id, timeout=600)
        record.rendered_at = time.time()


# --------------------------------------------------------------------------- the process under test


@dataclass
class ProcessUnderTest:
    """``python -m bot run`` or ``python bench/naive_bot.py``, measured through /proc."""

    argv: list[str]
    env: dict[str, str]
    workdir: Path
    log_path: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait_log(self, text: str, timeout: float) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while text not in self.log():
                if not self.alive():
                    raise RuntimeError(f"{self.argv[-1]} exited early:\n{self.log()[-4000:]}")
                await asyncio.sleep(0.05)

    def peak_rss_bytes(self) -> int:
        """VmHWM: the kernel's own high-water mark of the resident set, so no sampling is missed."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads)."""
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the process (all its threads)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def base_environment(workdir: Path) -> dict[str, str]:
    """A clean environment: nothing from the caller's shell or .env tunes the process under test."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PYTHONPATH"] = str(REPO)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- one mode


def prompt_for(index: int) -> str:
    return f"bench job {index:04d}: a paper boat drifting down a rainy street"


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        # Nearest rank: p99 of 200 values is the 198th, a value that was really observed.
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": round(pick(0.50), 1), "p99": round(pick(0.99), 1), "max": round(ordered[-1], 1)}


def is_mp4_upload(request: RecordedRequest) -> bool:
    return any(f.filename.endswith(".mp4") for f in request.files)


def route_kind(request: RecordedRequest) -> str:
    """interaction callback, interaction webhook (token routes), channel message (bot token), other."""
    if request.route == ROUTE_CALLBACK:
        return "interaction_callback"
    if "webhook_token" in request.params:
        return "interaction_webhook"
    if request.route in (ROUTE_CHANNEL_MESSAGE, ROUTE_CHANNEL_MESSAGES):
        return "channel_message"
    return "other_bot_token"


def per_job(value: float, jobs: int) -> float:
    return round(value / jobs, 3) if jobs else 0.0


def max_started_within(times: list[float], window: float) -> int:
    """The most requests started within any ``window`` seconds (how concurrent the downloads were)."""
    ordered = sorted(times)
    best = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run_mode(
    mode: Mode, workload: Workload, root: Path, say: Callable[[str], None], *, label: str | None = None
) -> dict[str, Any]:
    workdir = root / (label or mode)
    workdir.mkdir(parents=True)
    big = mode == "big_downloads"
    webhooks = mode in ("bot_webhooks_on", "big_downloads")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    http_port = free_port() if webhooks else None

    fake = FakeDiscord(
        clock=time.time,  # the same clock as the renderer, so completion → upload is one subtraction
        channel_message_limit=CHANNEL_MESSAGE_LIMIT,
        webhook_message_limit=WEBHOOK_MESSAGE_LIMIT,
        global_limit=GLOBAL_LIMIT,
        attachment_size_limit=BOOSTED_UPLOAD_LIMIT if big else 10 * 1024 * 1024,
    )
    fake.keep_file_data = False  # sizes only: a thousand 3 MiB uploads stay off this process's heap
    SHAPE.step_seconds = workload.progress_step_seconds
    SHAPE.prerendered = None
    if workload.video_bytes and not big:
        SHAPE.prerendered = root / f"prerendered-{workload.video_bytes}"
        if not (SHAPE.prerendered / ASSETS["video"].filename).exists():
            say(f"pre-rendering the {workload.video_bytes / 1048576:g} MiB video every job serves")
            prerender(SHAPE.prerendered, workload.video_bytes)
    channel_ids = [int(fake.add_channel(f"videos-{n:02d}")["id"]) for n in range(workload.channels)]
    member_ids = [int(fake.add_member(name=f"member{n:04d}")["user"]["id"]) for n in range(workload.members)]

    config = LocalRendererConfig(
        generation_seconds=workload.generation_seconds,
        queue_seconds=workload.queue_seconds,
        fps=RENDER_FPS,
        models={MODEL: [SMALL_SIZE, BIG_SIZE]},
        poll_after_ms=workload.poll_after_ms,
        latency_seconds=workload.provider_latency_ms / 1000,
        data_dir=workdir / "renderer",
        noise=big,
        target_bitrate=BIG_TARGET_BITRATE if big else None,
        webhook_url=f"http://127.0.0.1:{http_port}/webhooks/videos" if webhooks else None,
        webhook_secret=secret if webhooks else None,
        # A thousand jobs in flight: the renderer's own bounds (256 active, 2 GiB) are raised.
        max_active_jobs=20_000,
        max_jobs=40_000,
        max_stored_bytes=1 << 42,
    )
    provider_log = ProviderLog(generation_seconds=workload.generation_seconds)
    renderer = LocalRenderer(config, middlewares=[provider_log_middleware(provider_log, lambda: renderer)])

    async with fake, renderer:
        env = base_environment(workdir)
        env.update(
            {
                "DISCORD_TOKEN": fake.token,
                "DISCORD_API_BASE_URL": fake.api_base,
                "DISCORD_GATEWAY_URL": fake.gateway_url,
                "VIDEO_API_BASE_URL": renderer.base_url,
            }
        )
        if mode == "naive_baseline":
            argv = [sys.executable, str(REPO / "bench" / "naive_bot.py")]
        else:
            argv = [sys.executable, "-m", "bot", "run"]
            models_file = workdir / "models.toml"
            models_file.write_text(BENCH_CATALOG)
            env.update(
                {
                    "DATABASE_URL": f"sqlite:///{workdir / 'data' / 'videobot.db'}",
                    "DATA_DIR": str(workdir / "data"),
                    "MODELS_FILE": str(models_file),
                    "LOG_LEVEL": "INFO",
                    "VIDEO_API_REQUESTS_PER_MINUTE": str(workload.provider_requests_per_minute),
                }
            )
            if webhooks:
                env.update({"HTTP_PORT": str(http_port), "WEBHOOK_SECRET": secret})
            if big:
                env["MAX_CONCURRENT_DELIVERIES"] = str(BIG_JOBS)
        process = ProcessUnderTest(argv, env, workdir, workdir / "process.log")
        say(f"{mode}: starting {' '.join(argv[1:])}")
        await process.start()
        # The harness (fake Discord, renderer, this loop) runs without its cyclic garbage collector
        # while a workload runs: its full collections over the run's records paused this loop for
        # 100-300 ms, stalling the fake Discord and the renderer, and counted against the bot's
        # acknowledgement times. Reference counting frees the rest; one collection follows the run.
        gc.disable()
        try:
            return await drive(mode, workload, fake, provider_log, process, channel_ids, member_ids, say)
        finally:
            gc.enable()
            gc.collect()
            await process.stop()
            for watcher in list(provider_log.watchers):
                watcher.cancel()


async def drive(
    mode: Mode,
    workload: Workload,
    fake: FakeDiscord,
    provider_log: ProviderLog,
    process: ProcessUnderTest,
    channel_ids: list[int],
    member_ids: list[int],
    say: Callable[[str], None],
) -> dict[str, Any]:
    await fake.wait_for_request(
        lambda r: r.method == "PUT" and r.route is not None and r.route.endswith("/commands"),
        timeout=STARTUP_TIMEOUT,
    )
    await process.wait_log("has connected to Gateway", STARTUP_TIMEOUT)
    if mode != "naive_baseline":
        await process.wait_log("job tracker running", STARTUP_TIMEOUT)
    mark = fake.mark()
    cpu_at_start = process.cpu_seconds()
    split_at_start = process.cpu_split()
    harness_at_start = harness_cpu_seconds()
    started_at = time.time()

    jobs: list[JobRecord] = []
    gap = workload.arrival_seconds / max(1, workload.members)
    for index, (member_id, channel_id) in enumerate(
        zip(member_ids, (channel_ids[i % len(channel_ids)] for i in range(len(member_ids))), strict=True)
    ):
        # Jobs arrive at an even pace, except the big ones (big-downloads scenario): they come first,
        # all at once, so that they finish together.
        await sleep_until(started_at + max(0, index - workload.big_jobs) * gap)
        prompt = prompt_for(index)
        options: dict[str, Any] = {"prompt": prompt, "seconds": SMALL_SECONDS, "size": SMALL_SIZE}
        if index < workload.big_jobs:
            options.update(seconds=BIG_SECONDS, size=BIG_SIZE)
        dispatched_at = fake.clock()
        handle = await fake.invoke_command("video", options, user=member_id, channel_id=channel_id)
        jobs.append(JobRecord(index, prompt, channel_id, dispatched_at, handle))
    say(f"{mode}: {len(jobs)} jobs dispatched in {time.time() - started_at:.1f}s")

    deadline = started_at + workload.delivery_allowance_seconds()
    delivered = await wait_for_deliveries(fake, mark, jobs, deadline, process)
    finished_at = time.time()
    say(f"{mode}: {len(delivered)}/{len(jobs)} delivered after {finished_at - started_at:.1f}s")
    peak_rss = process.peak_rss_bytes() if process.alive() else None
    cpu_total = process.cpu_seconds() if process.alive() else None
    split = process.cpu_split() if process.alive() else None
    harness_cpu = harness_cpu_seconds() - harness_at_start
    result = measure(
        mode,
        workload,
        fake,
        mark,
        provider_log,
        jobs,
        delivered,
        wall_seconds=finished_at - started_at,
        peak_rss=peak_rss,
        cpu_total=cpu_total,
        cpu_during_jobs=None if cpu_total is None else cpu_total - cpu_at_start,
    )
    wall = max(1e-9, finished_at - started_at)
    cpus = os.cpu_count() or 1
    if split is not None:
        # Where the process's CPU went: its own code and libraries (user) or the kernel (system:
        # sockets, disk writes, the event loop's polling).
        result["cpu_ms_per_job_split"] = {
            "user": round((split[0] - split_at_start[0]) * 1000 / max(1, len(jobs)), 1),
            "system": round((split[1] - split_at_start[1]) * 1000 / max(1, len(jobs)), 1),
        }
    result["cpu_share_of_machine"] = {
        # How busy the machine was: the harness (fake Discord, renderer, this loop) beside the process
        # under test. Near 1.0 together, the machine was saturated and the figures are the machine's.
        "process_under_test": None
        if cpu_total is None
        else round((cpu_total - cpu_at_start) / wall / cpus, 3),
        "harness": round(harness_cpu / wall / cpus, 3),
        "cpus": cpus,
    }
    return result


def harness_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def job_of_request(
    request: RecordedRequest, by_token: dict[str, JobRecord], by_message: dict[int, JobRecord]
) -> JobRecord | None:
    token = request.params.get("webhook_token")
    if token is not None:
        return by_token.get(token)
    message_id = request.params.get("message_id")
    return by_message.get(int(message_id)) if message_id and message_id.isdigit() else None


def original_message_ids(fake: FakeDiscord, jobs: list[JobRecord]) -> dict[int, JobRecord]:
    """Replies by message id, for uploads through the channel route (after the token expired)."""
    by_interaction = {job.handle.id: job for job in jobs}
    return {
        message.id: by_interaction[message.interaction_id]
        for message in list(fake.messages.values())
        if message.interaction_id in by_interaction
    }


async def wait_for_deliveries(
    fake: FakeDiscord, mark: int, jobs: list[JobRecord], deadline: float, process: ProcessUnderTest
) -> dict[int, RecordedRequest]:
    """Job index → its first accepted MP4 upload; returns when every job has one, the process died,
    or the deadline passed. Checks five times a second (the fake's waiters would wake on every request)."""
    by_token = {job.handle.token: job for job in jobs}
    delivered: dict[int, RecordedRequest] = {}
    scanned = mark
    while len(delivered) < len(jobs) and time.time() < deadline and process.alive():
        by_message = (
            original_message_ids(fake, jobs)
            if any(r.route and r.route.startswith("/channels/") for r in fake.requests[scanned:])
            else {}
        )
        for request in fake.requests[scanned:]:
            if request.status == 200 and is_mp4_upload(request):
                job = job_of_request(request, by_token, by_message)
                if job is not None:
                    delivered.setdefault(job.index, request)
        scanned = len(fake.requests)
        await asyncio.sleep(0.2)
    return delivered


def measure(
    mode: Mode,
    workload: Workload,
    fake: FakeDiscord,
    mark: int,
    provider_log: ProviderLog,
    jobs: list[JobRecord],
    delivered: dict[int, RecordedRequest],
    *,
    wall_seconds: float,
    peak_rss: int | None,
    cpu_total: float | None,
    cpu_during_jobs: float | None,
) -> dict[str, Any]:
    count = len(jobs)
    discord_requests = fake.requests[mark:]
    by_token = {job.handle.token: job for job in jobs}
    by_message = original_message_ids(fake, jobs)

    callbacks: dict[str, float] = {}
    first_upload: dict[int, float] = {}
    routes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for request in discord_requests:
        routes[f"{request.method} {request.route or request.path}"] += 1
        kinds[route_kind(request)] += 1
        if request.route == ROUTE_CALLBACK:
            callbacks.setdefault(request.params.get("webhook_id", ""), request.at)
        if is_mp4_upload(request):
            job = job_of_request(request, by_token, by_message)
            if job is not None:
                first_upload.setdefault(job.index, request.at)

    ack_ms = [
        (callbacks[str(job.handle.id)] - job.dispatched_at) * 1000
        for job in jobs
        if str(job.handle.id) in callbacks
    ]
    completion_to_upload_ms: list[float] = []
    download_to_upload_ms: list[float] = []
    for job in jobs:
        completed = provider_log.completed_at(job.prompt)
        if completed is not None and job.index in first_upload:
            completion_to_upload_ms.append((first_upload[job.index] - completed) * 1000)
        video = provider_log.videos_by_prompt.get(job.prompt)
        download = provider_log.content_started_at.get(video.video_id) if video else None
        if download is not None and job.index in first_upload:
            download_to_upload_ms.append((first_upload[job.index] - download) * 1000)

    by_endpoint = dict(sorted(provider_log.by_endpoint.items()))
    status_requests = by_endpoint.get("list", 0) + by_endpoint.get("retrieve", 0)
    too_many = sum(1 for r in discord_requests if r.status == 429)
    result: dict[str, Any] = {
        "jobs": count,
        "delivered": len(delivered),
        "wall_seconds": round(wall_seconds, 1),
        "videos_api_requests": {"total": sum(by_endpoint.values()), "by_endpoint": by_endpoint},
        "videos_api_requests_per_job": {
            "total": per_job(sum(by_endpoint.values()), count),
            **{name: per_job(n, count) for name, n in by_endpoint.items()},
        },
        "status_requests_per_job": per_job(status_requests, count),
        "discord_requests": {"total": len(discord_requests), "by_route": dict(routes.most_common())},
        "discord_requests_per_job": per_job(len(discord_requests), count),
        "discord_requests_per_job_by_route_kind": {k: per_job(n, count) for k, n in sorted(kinds.items())},
        "discord_429s": too_many,
        "discord_429s_by_kind": dict(fake.rate_limited_by_kind),
        "discord_429s_per_job": per_job(too_many, count),
        "ack_latency_ms": percentiles(ack_ms),
        "acknowledged": len(ack_ms),
        "completion_to_upload_start_ms": percentiles(completion_to_upload_ms),
        # The part of it after the download request reached the provider (download, probe, upload).
        "download_start_to_upload_start_ms": percentiles(download_to_upload_ms),
        "peak_rss_mb": None if peak_rss is None else round(peak_rss / 1048576, 1),
        "cpu_seconds": None if cpu_total is None else round(cpu_total, 2),
        "cpu_seconds_during_jobs": None if cpu_during_jobs is None else round(cpu_during_jobs, 2),
        "cpu_ms_per_job": None if cpu_during_jobs is None else round(cpu_during_jobs * 1000 / count, 1),
    }
    if mode == "big_downloads":
        big_download_starts = [
            provider_log.content_started_at[video.video_id]
            for job in jobs[: workload.big_jobs]
            if (video := provider_log.videos_by_prompt.get(job.prompt)) is not None
            and video.video_id in provider_log.content_started_at
        ]
        upload_sizes = sorted(
            (
                f.size
                for r in discord_requests
                if r.status == 200
                for f in r.files
                if f.filename.endswith(".mp4")
            ),
            reverse=True,
        )
        result["big_downloads"] = {
            "files": workload.big_jobs,
            "uploads_of_20_mb_or_more": sum(1 for size in upload_sizes if size >= 20_000_000),
            "largest_upload_mb": round(upload_sizes[0] / 1e6, 1) if upload_sizes else None,
            "big_downloads_started_within_2s": max_started_within(big_download_starts, 2.0),
        }
    return result


# --------------------------------------------------------------------------- report


RATIO_METRICS: Final[dict[str, Callable[[dict[str, Any]], float | None]]] = {
    "videos_api_requests_per_job": lambda m: m["videos_api_requests_per_job"]["total"],
    "status_requests_per_job": lambda m: m["status_requests_per_job"],
    "discord_requests_per_job": lambda m: m["discord_requests_per_job"],
    "discord_429s": lambda m: m["discord_429s"],
    "ack_latency_p50_ms": lambda m: m["ack_latency_ms"]["p50"],
    "ack_latency_p99_ms": lambda m: m["ack_latency_ms"]["p99"],
    "completion_to_upload_start_p50_ms": lambda m: m["completion_to_upload_start_ms"]["p50"],
    "completion_to_upload_start_p99_ms": lambda m: m["completion_to_upload_start_ms"]["p99"],
    "peak_rss_mb": lambda m: m["peak_rss_mb"],
    "cpu_seconds_during_jobs": lambda m: m["cpu_seconds_during_jobs"],
}


def ratio(baseline: float | None, bot: float | None) -> float | None:
    """baseline / bot; None when undefined (a zero or missing bot figure: JSON has no infinity)."""
    if baseline is None or bot is None or bot == 0:
        return None
    return round(baseline / bot, 2)


def ratios(modes: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    baseline = modes.get("naive_baseline")
    if baseline is None:
        return {}
    return {
        f"naive_baseline/{name}": {
            metric: ratio(read(baseline), read(modes[name])) for metric, read in RATIO_METRICS.items()
        }
        for name in ("bot_webhooks_off", "bot_webhooks_on")
        if name in modes
    }


def target(measured: float | None, limit: float, *, strict: bool = False) -> dict[str, Any]:
    met = None if measured is None else (measured < limit if strict else measured <= limit)
    return {"measured": measured, "target": f"{'<' if strict else '≤'} {limit}", "met": met}


def targets(modes: dict[str, dict[str, Any]], workload: Workload, poll_interval: float) -> dict[str, Any]:
    """The issue's targets, read off the bot modes (None: the mode did not run or had no data)."""
    off, on, big = modes.get("bot_webhooks_off"), modes.get("bot_webhooks_on"), modes.get("big_downloads")

    def get(mode: dict[str, Any] | None, read: Callable[[dict[str, Any]], Any]) -> Any:
        return None if mode is None else read(mode)

    result: dict[str, Any] = {
        "status_requests_per_job_webhooks_off": target(get(off, lambda m: m["status_requests_per_job"]), 2),
        "status_requests_per_job_webhooks_on": target(get(on, lambda m: m["status_requests_per_job"]), 0.2),
    }
    for name, mode in (("webhooks_off", off), ("webhooks_on", on)):
        result[f"discord_requests_per_job_{name}"] = target(
            get(mode, lambda m: m["discord_requests_per_job"]), 10
        )
        result[f"discord_429s_{name}"] = target(get(mode, lambda m: m["discord_429s"]), 0)
        result[f"ack_p99_ms_{name}"] = target(
            get(mode, lambda m: m["ack_latency_ms"]["p99"]), 250, strict=True
        )
    result["completion_to_upload_p50_ms_webhooks_on"] = target(
        get(on, lambda m: m["completion_to_upload_start_ms"]["p50"]), 1000, strict=True
    )
    result["completion_to_upload_p50_ms_webhooks_off"] = target(
        get(off, lambda m: m["completion_to_upload_start_ms"]["p50"]), poll_interval * 1000, strict=True
    )
    result["peak_rss_mb_big_downloads"] = target(get(big, lambda m: m["peak_rss_mb"]), 250, strict=True)
    result["conditions"] = (
        f"{workload.members} jobs, {workload.generation_seconds:g} s generation; the issue's targets assume "
        "200 concurrent jobs and a 60 s generation"
    )
    return result


async def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    workload = Workload(
        members=args.members,
        channels=args.channels,
        generation_seconds=args.generation_seconds,
        arrival_seconds=args.arrival_seconds,
        provider_latency_ms=args.provider_latency_ms,
        poll_after_ms=args.poll_after_ms,
        provider_requests_per_minute=args.provider_rpm,
    )
    defaults = Settings.model_fields
    poll_interval = float(defaults["poll_interval_seconds"].default)
    modes: dict[str, dict[str, Any]] = {}
    runs: list[tuple[Mode, Workload]] = [
        ("bot_webhooks_off", workload),
        ("bot_webhooks_on", workload),
        ("naive_baseline", workload),
    ]
    if args.big_downloads:
        big = dataclasses.replace(
            workload,
            generation_seconds=args.big_downloads_generation_seconds,
            big_jobs=min(BIG_JOBS, args.members),
        )
        runs.append(("big_downloads", big))
    if args.only:
        runs = [(mode, w) for mode, w in runs if mode in args.only]
    started = time.time()
    with contextlib.ExitStack() as cleanup:
        tmp = args.workdir or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="videobot-bench-"))
        if args.quick:
            # A smoke run: the modes run side by side to finish sooner; they then share the CPU, so
            # the figures only show that everything works, not how fast.
            results = await asyncio.gather(*(run_mode(mode, w, Path(tmp), say) for mode, w in runs))
            modes.update(zip((mode for mode, _ in runs), results, strict=True))
        else:
            for mode, mode_workload in runs:
                modes[mode] = await run_mode(mode, mode_workload, Path(tmp), say)
    return {
        "benchmark": "videobot (python -m bot run) vs the naive poll-every-second bot",
        "conditions": {
            **workload.describe(),
            "video": {"model": MODEL, "size": SMALL_SIZE, "seconds": SMALL_SECONDS, "fps": RENDER_FPS},
            "time_compression": "none: every job really takes generation_seconds at the local renderer",
            "modes_ran": "side by side (--quick)" if args.quick else "one after another",
            "discord_rate_limits": {
                "per_channel_message_writes": list(CHANNEL_MESSAGE_LIMIT),
                "per_interaction_token_writes": list(WEBHOOK_MESSAGE_LIMIT),
            },
            "bot_settings": {
                name.upper(): field.default for name, field in defaults.items() if name in TUNING
            },
            "naive_poll_seconds": 1.0,
            "big_downloads": None
            if not args.big_downloads
            else {
                "generation_seconds": args.big_downloads_generation_seconds,
                "big_jobs": min(BIG_JOBS, args.members),
                "size": BIG_SIZE,
                "seconds": BIG_SECONDS,
                "MAX_CONCURRENT_DELIVERIES": BIG_JOBS,
                "upload_limit_mb": BOOSTED_UPLOAD_LIMIT / 1048576,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(terse=True),
            },
            "measured_with": "/proc/<pid>/status VmHWM (peak RSS) and /proc/<pid>/stat utime+stime (CPU)",
        },
        "modes": modes,
        "ratios": ratios(modes),
        "targets": targets(modes, workload, poll_interval),
        "total_seconds": round(time.time() - started, 1),
    }


def issue_targets(name: str, modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets for one named workload (None: the mode did not run or had no data)."""
    off, on, naive = modes.get("bot_webhooks_off"), modes.get("bot_webhooks_on"), modes.get("naive_baseline")

    def get(mode: dict[str, Any] | None, read: Callable[[dict[str, Any]], Any]) -> Any:
        return None if mode is None else read(mode)

    result: dict[str, Any] = {}
    for label, mode, p50, p99 in (("polling", off, 1500, 3000), ("webhooks", on, 300, 1000)):
        if mode is None:
            continue
        latency = mode["completion_to_upload_start_ms"]
        result[f"completion_to_upload_p50_ms_{label}"] = target(latency["p50"], p50)
        result[f"completion_to_upload_p99_ms_{label}"] = target(latency["p99"], p99)
        result[f"discord_429s_{label}"] = target(mode["discord_429s"], 0)
        result[f"discord_requests_per_job_{label}"] = target(mode["discord_requests_per_job"], 8)
        result[f"delivered_{label}"] = {"measured": f"{mode['delivered']}/{mode['jobs']}"}
    result["provider_requests_per_job_polling"] = target(
        get(off, lambda m: m["videos_api_requests_per_job"]["total"]), 4
    )
    if naive is not None and off is not None:
        result["provider_requests_per_job_polling_vs_naive"] = target(
            ratio(off["videos_api_requests_per_job"]["total"], naive["videos_api_requests_per_job"]["total"]),
            0.1,
        )
    result["provider_requests_per_job_webhooks"] = target(
        get(on, lambda m: m["videos_api_requests_per_job"]["total"]), 2.2
    )
    ack_limit = {"burst": 250, "thousand": 50}.get(name)
    if ack_limit is not None:
        for label, mode in (("polling", off), ("webhooks", on)):
            result[f"ack_p99_ms_{label}"] = target(get(mode, lambda m: m["ack_latency_ms"]["p99"]), ack_limit)
    if name == "thousand":
        result["cpu_ms_per_job_polling"] = target(get(off, lambda m: m["cpu_ms_per_job"]), 30)
        result["peak_rss_mb_polling"] = target(get(off, lambda m: m["peak_rss_mb"]), 200)
    return result


def scale_curve(workloads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-job cost of the bot (webhooks off, budget raised) by jobs in flight; flat within 20 %."""
    points = []
    for name in ("scale-200", "thousand", "scale-3000"):
        mode = workloads.get(name, {}).get("modes", {}).get("bot_webhooks_off")
        if mode is None:
            continue
        points.append(
            {
                "jobs": mode["jobs"],
                "workload": name,
                "cpu_ms_per_job": mode["cpu_ms_per_job"],
                "peak_rss_mb": mode["peak_rss_mb"],
                "videos_api_requests_per_job": mode["videos_api_requests_per_job"]["total"],
                "discord_requests_per_job": mode["discord_requests_per_job"],
                "completion_to_upload_start_ms": mode["completion_to_upload_start_ms"],
                "ack_latency_ms": mode["ack_latency_ms"],
                "cpu_share_of_machine": mode["cpu_share_of_machine"],
            }
        )
    cpu = [p["cpu_ms_per_job"] for p in points if p["cpu_ms_per_job"]]
    growth = round(max(cpu) / min(cpu) - 1, 3) if len(cpu) > 1 else None
    return {
        "points": points,
        "cpu_per_job_growth": target(growth, 0.2),
        "note": "3,000 in flight runs only with --scale-3000 (the machine must drive it: see cpu_share_of_machine)",
    }


async def run_named(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    names = list(args.workload or DEFAULT_RUN)
    if args.scale_3000 and "scale-3000" not in names:
        names.append("scale-3000")
    started = time.time()
    workloads: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as cleanup:
        tmp = Path(
            args.workdir or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="videobot-bench-"))
        )
        for name in names:
            workload = WORKLOADS[name]
            runs: list[Mode] = ["bot_webhooks_off"]
            if not name.startswith("scale-"):
                runs.append("bot_webhooks_on")
            if workload.naive and not args.no_naive:
                runs.append("naive_baseline")
            if args.only:
                runs = [mode for mode in runs if mode in args.only]
            modes: dict[str, dict[str, Any]] = {}
            if workload.video_bytes and not (tmp / f"prerendered-{workload.video_bytes}").exists():
                say(f"pre-rendering the {workload.video_bytes / 1048576:g} MiB video every job serves")
                prerender(tmp / f"prerendered-{workload.video_bytes}", workload.video_bytes)
            # The bot's two modes run side by side (each with its own fake Discord, renderer and
            # process) so that the whole benchmark fits in 15 minutes; the naive baseline runs alone.
            together = [m for m in runs if m != "naive_baseline"] if not args.one_at_a_time else []
            groups = [together] + [[m] for m in runs if m not in together]
            for group in (g for g in groups if g):
                say(f"{name}: {' + '.join(group)}")
                results = await asyncio.gather(
                    *(run_mode(mode, workload, tmp, say, label=f"{name}-{mode}") for mode in group)
                )
                modes.update(zip(group, results, strict=True))
            workloads[name] = {
                "conditions": workload.describe(),
                "modes": modes,
                "ratios": ratios(modes),
                "targets": issue_targets(name, modes),
            }
    defaults = Settings.model_fields
    return {
        "benchmark": "videobot (python -m bot run) vs the naive poll-every-second bot, the issue's workloads",
        "conditions": {
            "discord_rate_limits": {
                "per_channel_message_writes": list(CHANNEL_MESSAGE_LIMIT),
                "per_interaction_token_writes": list(WEBHOOK_MESSAGE_LIMIT),
                "global_bot_token_requests": list(GLOBAL_LIMIT),
            },
            "provider": "the local renderer serving one pre-rendered MP4 per job (hard links), "
            "openai-poll-after-ms 2000, 50 ms per answer, progress in steps",
            "time_compression": "none: every job really takes generation_seconds",
            "modes_ran": "one after another"
            if args.one_at_a_time
            else "bot_webhooks_off and bot_webhooks_on side by side, then naive_baseline alone",
            "bot_settings": {
                name.upper(): field.default for name, field in defaults.items() if name in TUNING
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(terse=True),
            },
            "measured_with": "/proc/<pid>/status VmHWM (peak RSS) and /proc/<pid>/stat utime+stime (CPU)",
        },
        "workloads": workloads,
        "scale_curve": scale_curve(workloads),
        "total_seconds": round(time.time() - started, 1),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--members", type=int, help="members, one /video each (default 200; --quick 20)")
    parser.add_argument(
        "--channels", type=int, help="channels the members are spread over (default 10; --quick 4)"
    )
    parser.add_argument(
        "--generation-seconds",
        type=float,
        help="how long each job takes at the provider, in real time (default 60; --quick 2)",
    )
    parser.add_argument(
        "--arrival-seconds",
        type=float,
        help="the /video commands arrive evenly over this long (default 10; --quick 1)",
    )
    parser.add_argument(
        "--provider-latency-ms",
        type=float,
        default=50.0,
        help="added to every Videos API answer (default 50)",
    )
    parser.add_argument(
        "--provider-rpm",
        type=int,
        default=600,
        help="the provider's request budget the bot is given (VIDEO_API_REQUESTS_PER_MINUTE; default 600: "
        "200 jobs need ~400 creates and downloads within about a minute)",
    )
    parser.add_argument(
        "--poll-after-ms",
        type=int,
        default=None,
        help="have the renderer send openai-poll-after-ms (default: not sent, as LiteLLM and SGLang)",
    )
    parser.add_argument(
        "--big-downloads",
        action="store_true",
        help=f"also run the bot with {BIG_JOBS} of the jobs making ~22 MB files that finish together",
    )
    parser.add_argument(
        "--big-downloads-generation-seconds",
        type=float,
        default=30.0,
        help="generation time in the big-downloads scenario (default 30: long enough to render the big files)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 20 members, 2 s generation, the modes side by side (figures not comparable)",
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        help="run this named workload (repeatable; default: " + ", ".join(DEFAULT_RUN) + ")",
    )
    parser.add_argument(
        "--scale-3000", action="store_true", help="add 3,000 jobs in flight to the scale curve"
    )
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="named workloads: run the bot's two modes one after another (longer than 15 minutes)",
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline in named workloads")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep databases, media and process logs here (default: a temporary directory, removed)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(get_args(Mode)),
        help="run only this mode (repeatable); e.g. --big-downloads --only big_downloads",
    )
    return parser


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    quick = {"members": 20, "channels": 4, "generation_seconds": 2.0, "arrival_seconds": 1.0}
    full = {"members": 200, "channels": 10, "generation_seconds": 60.0, "arrival_seconds": 10.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.channels = max(1, min(args.channels, args.members))
    if args.quick and args.big_downloads_generation_seconds == 30.0:
        args.big_downloads_generation_seconds = 15.0
    return args


CUSTOM_FLAGS: Final = ("members", "channels", "generation_seconds", "arrival_seconds")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    custom = args.quick or args.big_downloads or any(getattr(args, name) is not None for name in CUSTOM_FLAGS)
    args = resolve_defaults(args)

    def say(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    # The workload flags (--members, --quick, ...) run one custom workload, as before; otherwise the
    # issue's named workloads run.
    report = asyncio.run(run(args, say) if custom and not args.workload else run_named(args, say))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
