"""A delivered video stays on disk but leaves memory: its page cache is freed for the next
download to reuse (checked with the kernel's own answer, ``mincore``)."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

import pytest

from bot.adapters.media import release_cached_pages

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="residency is read with Linux's mincore")


def cached_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            resident = (ctypes.c_ubyte * pages)()
            assert libc.mincore(address, size, resident) == 0, os.strerror(ctypes.get_errno())
            return sum(byte & 1 for byte in resident)
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def test_a_set_aside_video_keeps_its_bytes_on_disk_and_leaves_the_page_cache(tmp_path: Path) -> None:
    video = tmp_path / "job-1.mp4"
    data = os.urandom(1 << 20)
    with video.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())  # as a download ends: clean pages, which the kernel may drop
    assert video.read_bytes() == data
    pages = -(-len(data) // mmap.PAGESIZE)
    assert cached_pages(video) == pages  # just written and read: all in memory
    release_cached_pages(video)
    assert cached_pages(video) == 0
    assert video.read_bytes() == data  # still there for a re-delivery or a link


def test_a_file_already_gone_is_not_an_error(tmp_path: Path) -> None:
    release_cached_pages(tmp_path / "removed.mp4")
