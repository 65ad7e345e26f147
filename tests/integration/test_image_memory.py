"""Five hostile images fitted at the same moment cost a bounded amount of memory (issue "Hardening").

The fits run in a separate worker process (``bench/image_memory.py``), whose peak resident set,
process plus children, is sampled with psutil and checked against the kernel's high-water mark.
The bound is generous (the benchmark reports the figure; about 80 MB at the time of writing, the
old full decode about 1.4 GB), so load on the machine cannot make it flaky.
"""

from __future__ import annotations

from pathlib import Path

from bench.image_memory import TARGET, measure, write_images

BOUND_MB = 300


def test_five_hostile_images_at_once_stay_under_the_bound(tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    # ~40 megapixels each, yet small files: this is what makes them hostile.
    assert len(paths) == 5
    assert all(path.stat().st_size < 1_000_000 for path in paths)

    figures = measure("bounded", paths, TARGET, timeout=110)

    assert figures["fitted"] == [f"PNG {TARGET[0]}x{TARGET[1]}"] * 5
    assert figures["peak_rss_raise_mb"] < BOUND_MB, figures
