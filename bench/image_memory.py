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
loaded); the larger of the two counts. Run ``python bench/image_memory.py``; it prints ONE JSON
document, with ``peak_rss_raise_mb`` per mode and the naive/bounded ratio.
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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = ("bounded", "bounded_ungated", "naive")
TARGET = (1792, 1024)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
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
        results = {mode: measure(mode, paths, (width, height)) for mode in modes}
    document: dict[str, Any] = {"target": f"{width}x{height}", "images": images, "modes": results}
    if "naive" in results and "bounded" in results:
        document["naive_over_bounded"] = round(
            results["naive"]["peak_rss_raise_mb"] / max(results["bounded"]["peak_rss_raise_mb"], 0.1), 1
        )
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
