"""The one writer of job state.

Every status change goes through one method here, named after its trigger in
``bot.domain.jobs.TRANSITIONS``; each is a compare-and-set on the store (so a cancel and a delivery,
or two webhook deliveries, can't both win), and the ones that settle credits (delivered, failed,
cancelled) write their audit record in the same transaction as their state change. Nothing else calls
``JobRepository.transition``.

It also owns the one path that deletes a video at the provider (a job cancelled or given up on
must not keep running, and paid for, there), and the one status check a cancel makes there first:
Cancel never refunds finished work (see ``JobLifecycle.cancel``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bot.domain.errors import CancelUnverified, JobAlreadyFinished, JobNotCancellable, JobNotFound
from bot.domain.jobs import (
    TRANSITIONS,
    WITH_PROVIDER,
    ChargeState,
    Job,
    JobChanges,
    JobRequest,
    JobStatus,
    Trigger,
)
from bot.domain.messages import already_finished, cancel_refusal, cancel_unverified
from bot.domain.provider_errors import NotFound, VideoAPIError
from bot.services.lineage import delivered_seconds
from bot.services.ports import AuditLog, GuildPolicies, JobRepository, ProviderVideos, Receipt, Transaction

log = logging.getLogger(__name__)

MODERATION_BLOCKED = "moderation_blocked"
# The status check before a cancel refunds: bounded so the canceller's interaction (3 s to answer)
# still gets its reply when the provider is slow.
CANCEL_CHECK_SECONDS = 2.0


_BEING_POSTED = (JobStatus.DOWNLOADING, JobStatus.UPLOADING)


def _not_cancellable(job: Job) -> JobNotCancellable:
    if job.status in _BEING_POSTED:
        return JobAlreadyFinished(job.id, job.status.value, already_finished(job))
    return JobNotCancellable(job.id, job.status.value, cancel_refusal(job))


class JobLifecycle:
    def __init__(
        self,
        jobs: JobRepository,
        audit: AuditLog,
        policies: GuildPolicies,
        provider: ProviderVideos | None = None,
        *,
        clock: Callable[[], float] = time.time,
        cancel_check_seconds: float = CANCEL_CHECK_SECONDS,
    ) -> None:
        self.jobs = jobs
        self.audit = audit
        self.policies = policies
        self.provider = provider
        self._clock = clock
        self.cancel_check_seconds = cancel_check_seconds
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _move(
        self, job: Job, trigger: Trigger, changes: JobChanges, conn: Transaction | None = None
    ) -> Job | None:
        move = TRANSITIONS[trigger]
        target = changes.status or job.status
        if target not in move.targets:
            raise ValueError(f"{trigger.value} can't move job {job.id} to {target.value}")
        return await self.jobs.transition(job.id, expect=move.sources, changes=changes, conn=conn)

    async def _settle(
        self,
        job: Job,
        trigger: Trigger,
        changes: JobChanges,
        action: str,
        *,
        actor_id: int | None,
        details: dict[str, Any] | None = None,
    ) -> Job | None:
        """A move that settles credits, and its audit record, in one transaction: a crash between
        the two can't leave a charge or a refund without its record (or the reverse)."""
        async with self.jobs.transaction() as tx:
            moved = await self._move(job, trigger, changes, conn=tx)
            if moved is not None:
                await self.audit.audit(
                    action,
                    guild_id=job.guild_id,
                    actor_id=actor_id,
                    target_user_id=job.user_id,
                    job_id=job.id,
                    details=details,
                    conn=tx,
                )
        return moved

    async def create(self, request: JobRequest, conn: Transaction) -> int:
        """A new job, ``pending`` with its credits reserved, and its audit record, inside the
        submitter's transaction (the one that checked the member's limits)."""
        job_id = await self.jobs.insert_job(request, conn)
        await self.audit.audit(
            "job.submitted",
            guild_id=request.guild_id,
            actor_id=request.user_id,
            target_user_id=request.user_id,
            job_id=job_id,
            details={
                "prompt": request.prompt,
                "model": request.model,
                "size": request.size,
                "seconds": request.seconds,
                "cost": request.cost,
                **({"kind": request.kind} if request.kind != "video" else {}),
            },
            conn=conn,
        )
        return job_id

    # -- at the provider -------------------------------------------------------------------------

    async def submitting(self, job: Job) -> Job | None:
        """The create request is about to be sent (None: cancelled meanwhile)."""
        return await self._move(job, Trigger.SUBMIT, JobChanges(status=JobStatus.SUBMITTING))

    async def accepted(self, job: Job, video_id: str) -> Job | None:
        """The provider has ``video_id`` for this job (sent now, or found after a restart). When the
        job was cancelled while the request was in flight, the video is deleted there."""
        changes = JobChanges(status=JobStatus.QUEUED, provider_video_id=video_id, submitted_at=self._clock())
        updated = await self._move(job, Trigger.ACCEPTED, changes)
        if updated is None:
            self.delete_at_provider(job.id, video_id)
        return updated

    async def progress(
        self, job: Job, *, status: JobStatus, progress: int, provider_status: str
    ) -> Job | None:
        started_at = self._clock() if status is JobStatus.IN_PROGRESS and job.started_at is None else None
        changes = JobChanges(
            status=status, progress=progress, provider_status=provider_status, started_at=started_at
        )
        return await self._move(job, Trigger.PROGRESS, changes)

    async def completed(
        self, job: Job, provider_status: str, *, total_seconds: int | None = None
    ) -> Job | None:
        """The provider finished: the download comes next. ``total_seconds``: the length the
        provider answered (an extension's is its source and the new segment together)."""
        changes = JobChanges(
            status=JobStatus.DOWNLOADING,
            progress=100,
            provider_status=provider_status,
            generated_at=self._clock(),
            total_seconds=total_seconds,
        )
        return await self._move(job, Trigger.COMPLETED, changes)

    async def back_to_waiting(self, job: Job, status: JobStatus) -> Job | None:
        """A completion event arrived ahead of the provider's own state: wait for it again. Progress
        goes to 0 (the 100 % was the event's, not the provider's)."""
        changes = JobChanges(status=status, progress=0)
        return await self._move(job, Trigger.BACK_TO_WAITING, changes)

    # -- delivery --------------------------------------------------------------------------------

    async def downloaded(self, job: Job, media_path: str) -> Job | None:
        changes = JobChanges(status=JobStatus.UPLOADING, media_path=media_path)
        return await self._move(job, Trigger.DOWNLOADED, changes)

    async def delivered(self, job: Job, receipt: Receipt | int) -> Job | None:
        """The video is posted: charge the credits, exactly once. A presenter without message routes
        (the terminal, test recorders) may report a plain message id."""
        if not isinstance(receipt, Receipt):
            receipt = Receipt(message_id=int(receipt), route="direct")
        changes = JobChanges(
            status=JobStatus.COMPLETED,
            charge_state=ChargeState.CHARGED,
            delivered_message_id=receipt.message_id,
            finished_at=self._clock(),
            # A repost is the job's reply from now on, edited through the channel route.
            reply_message_id=receipt.message_id if receipt.reposted else None,
            token_expires_at=0.0 if receipt.reposted or receipt.token_refused else None,
        )
        details = {"cost": job.cost, "message_id": receipt.message_id, "route": receipt.route}
        return await self._settle(
            job, Trigger.DELIVERED, changes, "job.delivered", actor_id=None, details=details
        )

    async def record_reply(self, job: Job, receipt: Receipt) -> Job | None:
        """Where the job's card now lives (a repost, or a token the webhook refused). Not a status
        change: recorded whatever the status."""
        changes = JobChanges(
            reply_message_id=receipt.message_id if receipt.reposted or job.reply_message_id is None else None,
            token_expires_at=0.0 if receipt.reposted or receipt.token_refused else None,
        )
        if not changes.columns():
            return job
        return await self.jobs.update_job(job.id, changes)

    # -- endings ---------------------------------------------------------------------------------

    async def fail(
        self, job: Job, code: str, message: str, *, delete_at_provider: bool = False
    ) -> Job | None:
        """Mark failed and refund, exactly once (None: it had ended already).

        The one exception to the refund: a guild may choose to charge for prompts the provider's
        moderation blocked (the provider may bill for them, and it discourages probing)."""
        charge = ChargeState.REFUNDED
        if (
            code == MODERATION_BLOCKED
            and job.guild_id is not None
            and (await self.policies.policy(job.guild_id)).charge_moderation_blocked
        ):
            charge = ChargeState.CHARGED
        changes = JobChanges(
            status=JobStatus.FAILED,
            charge_state=charge,
            error_code=code,
            error_message=message,
            finished_at=self._clock(),
        )
        details = {"code": code, "charged": charge is ChargeState.CHARGED}
        failed = await self._settle(
            job, Trigger.FAILED, changes, "job.failed", actor_id=None, details=details
        )
        if failed is None:
            return None
        log.info("job %s failed: %s", job.id, code)
        if delete_at_provider and failed.provider_video_id:
            self.delete_at_provider(failed.id, failed.provider_video_id)
        return failed

    async def cancel(self, job_id: int, *, actor_id: int) -> Job:
        """Cancel and refund a job the provider has not finished, and delete it there.

        The rule: **Cancel never refunds finished work.** A cancel refunds in full (a member should
        not pay for a video they never receive), so it must not reach a video the provider has
        already made, and billed, but the tracker has not fetched yet. Before refunding a job at
        the provider, its status is asked there (one ``GET /videos/{id}``, at most
        ``cancel_check_seconds``):

        - ``completed``: not cancelled. The job moves on to its download (the ``completed``
          trigger, as if the tracker had seen it), so it is posted and charged as usual;
          ``JobAlreadyFinished`` says so to whoever pressed Cancel.
        - no answer (unreachable, an error, rate limited, slower than ``cancel_check_seconds``):
          not cancelled either; ``CancelUnverified`` asks to try again in a minute. Refunding
          blind could give away a video the provider has made and billed. The credits stay
          reserved, not spent: the tracker delivers the video (charged) once the provider answers
          again, or the job's deadline fails it (refunded).
        - not found there: cancelled (nothing exists to deliver; the tracker would fail it,
          refunded, anyway). Any other status: cancelled.

        A job not at the provider yet (waiting, or its create in flight) is cancelled without a
        check; a create that lands afterwards is deleted (``accepted``). The provider can still
        finish between the check and the cancel: the status compare-and-set keeps one winner.
        Either the tracker's completion wins (the cancel is refused as above), or the cancel does
        and a completion seen after it moves nothing (``completed`` expects a job still at the
        provider): that video is never posted, and its delete is sent to the provider. The
        operator may pay for it, but nobody receives it free.

        Raises ``JobNotCancellable`` (or ``JobNotFound``) when it is past that point."""
        job = await self.jobs.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.cancellable:
            await self._refuse_if_finished(job)
        changes = JobChanges(
            status=JobStatus.CANCELLED, charge_state=ChargeState.REFUNDED, finished_at=self._clock()
        )
        cancelled = await self._settle(job, Trigger.CANCELLED, changes, "job.cancelled", actor_id=actor_id)
        if cancelled is None:
            raise _not_cancellable(await self.jobs.get_job(job_id) or job)
        if cancelled.provider_video_id:
            self.delete_at_provider(cancelled.id, cancelled.provider_video_id)
        return cancelled

    async def _refuse_if_finished(self, job: Job) -> None:
        """The provider's say before a cancel refunds (``cancel``'s rule): raises when the video is
        made (and sends the job on to its delivery) or when the provider can't be asked."""
        if job.status not in WITH_PROVIDER or not job.provider_video_id or self.provider is None:
            return
        try:
            async with asyncio.timeout(self.cancel_check_seconds):
                video = await self.provider.retrieve(job.provider_video_id)
        except NotFound:
            return
        except (VideoAPIError, TimeoutError) as exc:
            log.warning("job %s: not cancelled, the provider status check failed: %s", job.id, exc)
            raise CancelUnverified(job.id, job.status.value, cancel_unverified(job)) from exc
        if video.status != "completed":
            return
        moved = await self.completed(job, video.status, total_seconds=delivered_seconds(video))
        current = moved or await self.jobs.get_job(job.id) or job
        if current.status in _BEING_POSTED:
            log.info("job %s: cancel refused, the provider had finished it; delivering", job.id)
            raise _not_cancellable(current)
        # Anything else (cancelled or failed meanwhile): the cancel's own compare-and-set answers.

    # -- the provider-delete path ----------------------------------------------------------------

    def delete_at_provider(self, job_id: int, video_id: str) -> None:
        """Delete a video we no longer want at the provider, in the background (best effort: it
        expires there anyway)."""
        if self.provider is None:
            return
        provider = self.provider

        async def delete() -> None:
            try:
                await provider.delete(video_id)
            except VideoAPIError as exc:
                log.info("job %s: provider delete failed (%s); it will expire there", job_id, exc)

        self.spawn(delete(), name=f"delete-at-provider-{job_id}")

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Follow-up work of a state change that its caller must not wait for (a provider delete,
        the cancelled card while the canceller's interaction is answered)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", name, exc_info=t.exception())

        task.add_done_callback(done)

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Let pending follow-ups finish (each provider delete saves a paid job), within
        ``grace_seconds`` (shutdown has its own deadline); the rest are cancelled."""
        if not self._tasks:
            return
        tasks = list(self._tasks)
        _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
