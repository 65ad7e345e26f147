"""Benchmark: what five hostile images fitted at the same moment cost, bounded against naive.

Five ~40-megapixel images that are each only kilobytes on the wire (three 1-bit PNGs, two baseline
JPEGs of flat colour) are fitted to the largest catalog size at once, in a separate worker process
per mode, so the figure is that process's own:

- ``bounded``: what the bot does, ``fit_in_gate`` (``prepare_image`` in a worker thread behind one
  ``ImageFitGate``), five members at once;
- ``bounded_ungated``: ``prepare_image`` in five threads at once with no gate, to show what the
  bounded decode alone buys;
- ``naive``: the old full decode, ``Image.open(...).convert("RGB")`` at full size and a LANCZOS fit,
  in five threads at once (as the bot ran it before, one ``asyncio.to_thread`` per request).

The peak is sampled with psutil (the worker plus any children, every 2 ms) and cross-checked with
the kernel's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` once the images are
loaded); the larger of the two counts.

- ``bot_process``: the real bot (``python -m bot run``) against the fake Discord and the local
  renderer; five different members send ``/video`` with one image each at the same moment, and the
  bot process's resident set (plus any children) is sampled every 5 ms from before the five requests
  until every member has an answer (a job card or a one-line refusal). The tests reuse
  ``bomb_the_bot`` (``tests/e2e/test_image_bomb_memory.py``).

Run ``python bench/image_memory.py``; it prints ONE JSON document, with ``peak_rss_raise_mb`` per
mode, the naive/bounded ratio and the naive/bot ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.discord import FakeDiscord

REPO = Path(__file__).resolve().parents[1]
WORKER_MODES = ("bounded", "bounded_ungated", "naive")
BOT_MODE = "bot_process"
MODES = (*WORKER_MODES, BOT_MODE)
TARGET = (1792, 1024)
TARGET_MODEL = "sora-2-pro"  # the only model in the default catalog with 1792x1024
MB = 1_000_000


def hostile_images() -> list[tuple[str, bytes]]:
    """Three 1-bit PNGs and two flat baseline JPEGs, each about 40 megapixels (under the cap)."""
    from PIL import Image, ImageDraw

    images: list[tuple[str, bytes]] = []
    for index in range(3):
        picture = Image.new("1", (6324, 6324), 0)
        ImageDraw.Draw(picture).ellipse((600 * index, 800, 5000, 6000), fill=1)
        images.append((f"bomb-{index}.png", _encode(picture, "PNG")))
        del picture
    for index, size in enumerate([(6324, 6324), (7744, 5164)]):
        picture = Image.new("RGB", size, (200, 40 * index, 30))
        ImageDraw.Draw(picture).rectangle((1000, 1000, 3000, 3000), fill=(20, 20, 220))
        images.append((f"large-{index}.jpg", _encode(picture, "JPEG", quality=85)))
        del picture
    return images


def _encode(picture: Any, image_format: str, **options: Any) -> bytes:
    out = io.BytesIO()
    picture.save(out, format=image_format, **options)
    return out.getvalue()


def write_images(folder: Path) -> list[Path]:
    paths = []
    for name, data in hostile_images():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------ the worker process


def _naive_fit(data: bytes, width: int, height: int) -> bytes:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        rgb = opened.convert("RGB")
    fitted = ImageOps.fit(rgb, (width, height), method=Image.Resampling.LANCZOS)
    return _encode(fitted, "PNG")


async def _fit_all(mode: str, images: Sequence[bytes], width: int, height: int) -> list[bytes]:
    from bot.adapters.media import ImageFitGate, fit_in_gate, prepare_image

    if mode == "bounded":
        gate = ImageFitGate()
        jobs = [fit_in_gate(gate, member, data, width, height) for member, data in enumerate(images)]
    elif mode == "bounded_ungated":
        jobs = [asyncio.to_thread(prepare_image, data, width, height) for data in images]
    else:
        jobs = [asyncio.to_thread(_naive_fit, data, width, height) for data in images]
    return list(await asyncio.gather(*jobs))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(mode: str, width: int, height: int, paths: Sequence[Path]) -> None:
    """Load the images, say "ready", wait for "go", fit them all at once, report one JSON line."""
    from PIL import Image

    import bot.adapters.media  # noqa: F401  (imported before the baseline, as in the bot)

    images = [path.read_bytes() for path in paths]
    gc.collect()
    hwm_reset = True
    try:
        # "5" resets the kernel's peak-RSS mark to the current RSS (Linux 4.0+).
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        hwm_reset = False
    baseline_kib = _status_kib("VmRSS")
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    results = asyncio.run(_fit_all(mode, images, width, height))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    sizes = []
    for data in results:
        with Image.open(io.BytesIO(data)) as fitted:
            sizes.append(f"{fitted.format} {fitted.width}x{fitted.height}")
    print(
        json.dumps(
            {
                "fitted": sizes,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": (cpu_after.ru_utime - cpu_before.ru_utime)
                + (cpu_after.ru_stime - cpu_before.ru_stime),
                "hwm_raise_kib": _status_kib("VmHWM") - baseline_kib if hwm_reset else None,
            }
        ),
        flush=True,
    )


# ------------------------------------------------------------------------------ the measuring parent


def _tree_rss(process: Any) -> int:
    import psutil

    total = 0
    with contextlib.suppress(psutil.Error):
        total += process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


def measure(
    mode: str, paths: Sequence[Path], size: tuple[int, int] = TARGET, timeout: float = 300
) -> dict[str, Any]:
    """Run one worker process for ``mode`` and return its figures (``peak_rss_raise_mb`` first)."""
    import psutil

    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        "--size",
        f"{size[0]}x{size[1]}",
        *map(str, paths),
    ]
    with subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        ready = child.stdout.readline()
        if not ready:
            raise RuntimeError(f"image worker for {mode} exited before it was ready")
        process = psutil.Process(child.pid)
        baseline = _tree_rss(process)
        peak = baseline
        child.stdin.write("go\n")
        child.stdin.flush()
        deadline = time.monotonic() + timeout
        while child.poll() is None:
            peak = max(peak, _tree_rss(process))
            if time.monotonic() > deadline:
                child.kill()
                raise RuntimeError(f"image worker for {mode} took longer than {timeout:.0f} s")
            time.sleep(0.002)
        report = json.loads(child.stdout.readline())
        if child.returncode != 0:
            raise RuntimeError(f"image worker for {mode} failed with exit code {child.returncode}")
    sampled = peak - baseline
    kernel = None if report["hwm_raise_kib"] is None else report["hwm_raise_kib"] * 1024
    raise_bytes = max(sampled, kernel or 0)
    return {
        "peak_rss_raise_mb": round(raise_bytes / MB, 1),
        "sampled_raise_mb": round(sampled / MB, 1),
        "kernel_hwm_raise_mb": None if kernel is None else round(kernel / MB, 1),
        "seconds": round(report["seconds"], 2),
        "cpu_seconds": round(report["cpu_seconds"], 2),
        "fitted": report["fitted"],
    }


# ------------------------------------------------------------------------------ the real bot process


class TreeRssSampler:
    """Samples a process's resident set plus its children's in a background thread, so the
    measuring event loop (which also serves the fake Discord) cannot delay the samples much."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.baseline = _tree_rss(self.process)
        self.peak = self.baseline
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.process))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss(self.process))


def _reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark of ``pid`` to its current RSS; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _proc_status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:  # the header only: nothing is decoded
        return image.size


async def bomb_the_bot(
    fake: FakeDiscord,
    pid: int,
    images: Sequence[tuple[str, bytes]],
    size: tuple[int, int] = TARGET,
    model: str = TARGET_MODEL,
    timeout: float = 120,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Five new members each send ``/video`` with one of ``images`` at the same moment; returns the
    bot process's peak RSS rise until all have an answer, and what each member saw (``outcomes``,
    one line each: ``card: <title>`` for a started job, ``refused: <text>`` for a refusal)."""
    from tests.helpers import wait_for

    members = [int(fake.add_member(name=f"bomber{n}")["user"]["id"]) for n in range(len(images))]
    attachments = [
        fake.add_attachment(
            data,
            name,
            "image/png" if name.endswith(".png") else "image/jpeg",
            width=_image_size(data)[0],
            height=_image_size(data)[1],
        )
        for name, data in images
    ]
    gc.collect()
    hwm_reset = _reset_hwm(pid)
    started = time.perf_counter()
    with TreeRssSampler(pid) as sampler:
        handles = await asyncio.gather(
            *(
                fake.invoke_command(
                    "video",
                    {
                        "prompt": f"a storm over the sea, take {n}",
                        "model": model,
                        "size": f"{size[0]}x{size[1]}",
                    },
                    attachments={"image": attachment},
                    user=member,
                )
                for n, (member, attachment) in enumerate(zip(members, attachments, strict=True))
            )
        )

        def outcome(handle: Any) -> str | None:
            for message in handle.followups:
                return f"refused: {message.content}"
            mid = handle._state.original_message_id
            message = fake.messages.get(mid) if mid is not None else None
            if message is not None and not message.deleted and message.embeds:
                return f"card: {message.embeds[0].get('title')}"
            return None

        await wait_for(
            lambda: all(outcome(h) is not None for h in handles),
            "an answer to each of the five members",
            timeout=timeout,
            interval=0.05,
        )
    seconds = time.perf_counter() - started
    sampled = sampler.peak - sampler.baseline
    kernel = _proc_status_bytes(pid, "VmHWM") - sampler.baseline if hwm_reset else None
    raise_bytes = max(sampled, kernel or 0)
    return {
        "peak_rss_raise_mb": round(raise_bytes / MB, 1),
        "sampled_raise_mb": round(sampled / MB, 1),
        "kernel_hwm_raise_mb": None if kernel is None else round(kernel / MB, 1),
        "baseline_rss_mb": round(sampler.baseline / MB, 1),
        "samples": sampler.samples,
        "seconds": round(seconds, 2),
        "outcomes": [outcome(h) for h in handles],
    }


async def measure_bot_process(paths: Sequence[Path], size: tuple[int, int], workdir: Path) -> dict[str, Any]:
    """Start the fake Discord, a local renderer that holds its renders (so the bot's memory is the
    images' alone) and the real bot, and ``bomb_the_bot`` once."""
    from bot.localapi import LocalRenderer, LocalRendererConfig
    from tests.e2e.conftest import E2E_RENDERER, BotProcess, hold
    from tests.fakes.discord import FakeDiscord

    config = LocalRendererConfig(**{**E2E_RENDERER, "data_dir": workdir / "renderer"})
    async with FakeDiscord() as fake, LocalRenderer(config) as renderer:
        hold(renderer)
        process = BotProcess(fake=fake, renderer=renderer, workdir=workdir / "bot")
        process.workdir.mkdir()
        await process.start()
        try:
            assert process.proc is not None
            images = [(path.name, path.read_bytes()) for path in paths]
            return await bomb_the_bot(fake, process.proc.pid, images, size)
        finally:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await process.stop()
            if process.proc is not None and process.proc.returncode is None:
                process.proc.kill()
                await process.proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=WORKER_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--size", default=f"{TARGET[0]}x{TARGET[1]}", help="target WIDTHxHEIGHT")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES)
    )
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    width, height = (int(part) for part in args.size.split("x"))
    if args.worker:
        worker(args.worker, width, height, args.paths)
        return 0
    modes = [mode for mode in args.modes.split(",") if mode]
    with tempfile.TemporaryDirectory(prefix="image-memory-") as tmp:
        paths = write_images(Path(tmp))
        images = [{"name": path.name, "bytes": path.stat().st_size} for path in paths]
        results = {
            mode: asyncio.run(measure_bot_process(paths, (width, height), Path(tmp)))
            if mode == BOT_MODE
            else measure(mode, paths, (width, height))
            for mode in modes
        }
    document: dict[str, Any] = {"target": f"{width}x{height}", "images": images, "modes": results}
    if "naive" in results and "bounded" in results:
        document["naive_over_bounded"] = round(
            results["naive"]["peak_rss_raise_mb"] / max(results["bounded"]["peak_rss_raise_mb"], 0.1), 1
        )
    if "naive" in results and BOT_MODE in results:
        document["naive_over_bot"] = round(
            results["naive"]["peak_rss_raise_mb"] / max(results[BOT_MODE]["peak_rss_raise_mb"], 0.1), 1
        )
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
