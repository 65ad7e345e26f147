"""Uploads are sent from memory while there is room for them, from disk otherwise: memory stays
bounded however many deliveries run at once."""

from __future__ import annotations

from pathlib import Path

import discord

from bot.discord.presenter import Upload, UploadMemory


async def test_files_are_held_in_memory_up_to_the_limit_and_sent_from_disk_beyond_it(tmp_path: Path) -> None:
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    first.write_bytes(b"A" * 600)
    second.write_bytes(b"B" * 600)
    memory = UploadMemory(1000)
    async with memory.holding(first) as held:
        assert held == b"A" * 600
        async with memory.holding(second) as beside:
            assert beside is None  # 600 more would pass 1,000: this one goes from disk
            from_disk = Upload(second, "b.mp4", beside).file()
            assert from_disk.fp.read() == b"B" * 600
            from_disk.close()
        from_memory = Upload(first, "a.mp4", held).file()
        assert isinstance(from_memory, discord.File) and from_memory.filename == "a.mp4"
        assert from_memory.fp.read() == b"A" * 600
    assert memory.used == 0
    async with memory.holding(second) as held:
        assert held == b"B" * 600  # the room came back when the first upload ended


async def test_a_failed_upload_gives_its_room_back(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"V" * 100)
    memory = UploadMemory(150)
    try:
        async with memory.holding(video):
            raise discord.DiscordException("the upload failed")
    except discord.DiscordException:
        pass
    assert memory.used == 0
