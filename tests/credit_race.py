"""One process of the cross-process credits race (``tests/integration/test_credits_processes.py``).

``python -m tests.credit_race`` with ``DATABASE_URL`` set: builds the store and job service the way
``videobot run`` does (``bot.app.open_store`` + ``bot.app.job_service``), prints ``ready``, waits for
one line on stdin, then submits ``SUBMISSIONS`` requests at once and prints one JSON line:
``{"accepted": [job ids], "refused": [messages]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bot.app import job_service, open_store
from bot.domain.errors import UserError
from bot.settings import Settings
from tests.integration.test_credits import request

SUBMISSIONS = 10


async def main() -> None:
    async with open_store(Settings()) as store:
        service = job_service(store)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(
            *(service.submit(request(cost=4)) for _ in range(SUBMISSIONS)), return_exceptions=True
        )
    accepted = [r.id for r in results if not isinstance(r, BaseException)]
    refused = [r.user_message for r in results if isinstance(r, UserError)]
    others = [repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, UserError)]
    print(json.dumps({"accepted": accepted, "refused": refused, "errors": others}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
