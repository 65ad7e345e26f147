"""A member's starting image is shared through the database: a second process (its own DATA_DIR,
as on another machine) can make the job again and send the image, and retention deletes the stored
copy with the file. Both backends; real download from the fake Discord, real fit, real PNG."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bot.adapters.media import ImageFitGate
from bot.adapters.reference_images import AttachmentImages
from bot.app import job_lifecycle, job_service
from bot.domain.catalog import default_catalog
from bot.domain.jobs import Requester
from bot.services.references import ReferenceImages
from bot.services.retention import RetentionPolicy, RetentionService
from tests.backends import Backend
from tests.fakes.discord import FakeDiscord
from tests.integration.test_reference_images import MEMBER, jpeg
from tests.integration.test_tracker import request

DAY = 86400.0


async def test_another_process_makes_again_with_the_stored_image_until_retention_deletes_it(
    backend: Backend, tmp_path: Path
) -> None:
    now = [1_800_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    images = AttachmentImages(extra_origin=None, gate=ImageFitGate())
    async with FakeDiscord() as fake, backend.open(clock=clock) as here, backend.open(clock=clock) as there:
        images.extra_origin = fake.api_base
        try:
            refs = ReferenceImages(images, images, tmp_path / "here" / "references", clock=clock, shared=here)
            path = await refs.prepare(fake.add_attachment(jpeg(), "a.jpg")["url"], MEMBER, 1280, 720)
        finally:
            await images.close()
        source = await job_service(here, clock=clock).submit(
            request("meadow", reference_image_path=str(path))
        )
        await job_lifecycle(here, clock=clock).fail(source, "server_error", "try again")
        path.unlink()  # the other machine never had this process's DATA_DIR

        stored = await there.reference_image(path.name)
        assert stored is not None
        with Image.open(io.BytesIO(stored)) as image:
            assert (image.format, image.size) == ("PNG", (1280, 720))
        service = job_service(there, catalog=default_catalog(), clock=clock)
        requester = Requester(guild_id=1, channel_id=2, user_id=3, user_name="ana")
        again = await service.again_request(source, requester)
        assert again.reference_image_path == str(path)

        now[0] += 8 * DAY  # past MEDIA_RETENTION_DAYS=7 after the job finished
        report = await RetentionService(
            there, tmp_path / "there", RetentionPolicy(media_days=7), clock=clock
        ).run_once()
        assert report.stored_references_deleted == 1
        assert await here.reference_image(path.name) is None
