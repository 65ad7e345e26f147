"""Credits use cases: balances and the request check ``JobService`` runs, what members and
moderators see (``/quota``, ``/videomod``), and every moderator change with its audit record.

Each change commits with its audit record in one transaction, and the result it returns is read
after the commit, so the reply shows what is stored.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.domain.bounds import check, check_optional, check_policy, check_role_override
from bot.domain.catalog import Catalog
from bot.domain.credits import (
    Balance,
    GuildPolicy,
    Period,
    RoleOverride,
    UsageReport,
    check_request,
    effective_limits,
    period_bounds,
    zone,
)
from bot.domain.errors import UserError
from bot.domain.jobs import FINAL_STATUSES, Job, JobRequest, JobStatus
from bot.domain.text_csv import csv_row
from bot.services.ports import CreditsRepository, HistoryRepository, Transaction

PAGE_SIZE = 10
#: How long ``CreditsService.precheck`` reuses a guild's policy and role overrides (seconds).
GUILD_LIMITS_SECONDS = 10.0
MAX_CACHED_GUILDS = 10_000
JobFilter = Literal["active", "completed", "failed", "cancelled"]

# ASCII digits only: \d also matches other scripts' digits ("١٢٣"), which int() would accept.
_ID = re.compile(r"[0-9]{15,21}")
# Durations are short numbers; anything longer is refused before int() sees it (int() of a
# 5,000-digit string raises ValueError).
_DURATION = re.compile(r"[0-9]{1,9}")
_CLEAR_WORDS = {"all", "any", "none", "clear", "*"}
_ACTIVE = [s.value for s in JobStatus if s not in FINAL_STATUSES]


@dataclass(frozen=True)
class MemberCredits:
    """What ``/quota`` shows: the balance and the videos still in progress."""

    balance: Balance
    in_progress: list[Job]


@dataclass(frozen=True)
class GuildSettings:
    policy: GuildPolicy
    roles: list[RoleOverride]
    changed: bool = True


@dataclass(frozen=True)
class SettingsChange:
    """The options of ``/videomod settings`` as given; None (or False) = leave as is. The list
    options are text (``#videos #art``, ``sora-2, sora-2-pro``, ``all``) parsed here."""

    allowance: int | None = None
    period: Period | None = None
    timezone: str | None = None
    max_concurrent: int | None = None
    cooldown_seconds: int | None = None
    guild_cap: int | None = None  # 0 = no cap
    moderator_role_id: int | None = None
    clear_moderator_role: bool = False
    charge_moderation_blocked: bool | None = None
    channels: str | None = None
    models: str | None = None
    sizes: str | None = None
    seconds: str | None = None


@dataclass(frozen=True)
class UsageSummary:
    period: Period
    start: float
    report: UsageReport
    csv: str


@dataclass(frozen=True)
class JobsPage:
    jobs: list[Job]
    page: int
    pages: int
    total: int


def _parse_list(text: str, what: str) -> tuple[str, ...]:
    items = tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)
    if len(items) == 1 and items[0].lower() in _CLEAR_WORDS:
        return ()
    if not items:
        raise UserError(f"Give the {what} separated by commas, or `all` to allow every one.")
    return items


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def usage_csv(report: UsageReport) -> str:
    """The usage report as CSV: one row per model and outcome, then one per top member."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["section", "model_or_user", "status", "charge_state", "jobs", "seconds", "credits", "usd"]
    )
    # Every cell through csv_row: a model name or status comes from configuration and the store,
    # and a spreadsheet must not run any of them as a formula.
    for row in report.by_model:
        writer.writerow(
            csv_row(
                [
                    "model",
                    row.model,
                    row.status,
                    row.charge_state,
                    row.jobs,
                    row.seconds,
                    row.credits,
                    f"{row.usd or 0:.2f}",
                ]
            )
        )
    for member in report.top_members:
        writer.writerow(
            csv_row(
                [
                    "member",
                    member.user_id,
                    "",
                    "charged",
                    member.jobs,
                    member.seconds,
                    member.credits,
                    f"{member.usd or 0:.2f}",
                ]
            )
        )
    return out.getvalue()


class CreditsService:
    def __init__(
        self,
        credits: CreditsRepository,
        history: HistoryRepository,
        *,
        catalog: Catalog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credits = credits
        self.history = history
        self.catalog = catalog
        self._clock = clock
        # Guild id -> (read at, policy, role overrides): what ``precheck`` reuses for a while.
        self._guild_limits: dict[int, tuple[float, GuildPolicy, list[RoleOverride]]] = {}

    # -- reading -------------------------------------------------------------------------------

    async def policy(self, guild_id: int) -> GuildPolicy:
        return await self.credits.policy(guild_id)

    async def balance(
        self,
        guild_id: int,
        user_id: int,
        roles: Iterable[int] = (),
        tx: Transaction | None = None,
    ) -> tuple[Balance, GuildPolicy]:
        """The member's balance now, and the guild's policy it came from. Inside ``tx`` when given
        (a reservation must check the numbers it will change); else from one committed snapshot."""
        if tx is None:
            async with self.credits.snapshot() as snapshot:
                return await self._balance(guild_id, user_id, roles, snapshot)
        return await self._balance(guild_id, user_id, roles, tx)

    async def _balance(
        self, guild_id: int, user_id: int, roles: Iterable[int], tx: Transaction
    ) -> tuple[Balance, GuildPolicy]:
        policy = await self.credits.policy(guild_id, tx)
        overrides = await self.credits.role_overrides(guild_id, tx)
        return await self._balance_under(policy, overrides, guild_id, user_id, set(roles), tx), policy

    async def _balance_under(
        self,
        policy: GuildPolicy,
        overrides: list[RoleOverride],
        guild_id: int,
        user_id: int,
        roles: set[int],
        tx: Transaction | None,
    ) -> Balance:
        """The member's balance under the guild's ``policy`` and role ``overrides``."""
        start, end = period_bounds(policy.period, policy.timezone, self._clock())
        member_allowance, reset_at = await self.credits.member_quota(guild_id, user_id, tx)
        limits = effective_limits(policy, overrides, roles, member_allowance)
        since = max(start, reset_at or 0.0)
        usage = await self.credits.usage(guild_id, user_id, since=since, guild_since=start, conn=tx)
        return Balance(limits=limits, usage=usage, period_start=start, resets_at=end)

    async def precheck(self, request: JobRequest, roles: Iterable[int] = ()) -> None:
        """``check_request`` before a member's command is acknowledged (``JobService.precheck``),
        answered in two reads instead of a six-step snapshot: the guild's policy and role overrides
        are reused for up to ``GUILD_LIMITS_SECONDS``. With 1,000 videos in flight each step waited
        its turn on a busy event loop, and acknowledgements took 80 ms at p99. A stale copy can't
        refuse wrongly: a refusal from it is checked again with fresh reads before it is given.
        And it can't let anything through: ``submit`` checks again inside its transaction."""
        if request.guild_id is None:
            return
        now = self._clock()
        cached = self._guild_limits.get(request.guild_id)
        if cached is None or now - cached[0] > GUILD_LIMITS_SECONDS:
            policy = await self.credits.policy(request.guild_id)
            cached = (now, policy, await self.credits.role_overrides(request.guild_id))
            self._guild_limits[request.guild_id] = cached
            if len(self._guild_limits) > MAX_CACHED_GUILDS:
                self._guild_limits.pop(next(iter(self._guild_limits)))
        _, policy, overrides = cached
        roles = set(roles)
        balance = await self._balance_under(policy, overrides, request.guild_id, request.user_id, roles, None)
        if self._refusal(request, policy, balance) is not None:
            self._guild_limits.pop(request.guild_id, None)
            await self.check_request(request, roles)

    async def check_request(
        self, request: JobRequest, roles: Iterable[int] = (), tx: Transaction | None = None
    ) -> None:
        """Raise the ``RequestRefused`` saying why the guild's limits refuse this request (DMs have
        none)."""
        if request.guild_id is None:
            return
        balance, policy = await self.balance(request.guild_id, request.user_id, roles, tx)
        refusal = self._refusal(request, policy, balance)
        if refusal is not None:
            raise refusal

    def _refusal(self, request: JobRequest, policy: GuildPolicy, balance: Balance) -> Exception | None:
        return check_request(
            policy,
            balance,
            cost=request.cost,
            channel_id=request.channel_id,
            model=request.model,
            size=request.size,
            seconds=request.seconds,
            now=self._clock(),
        )

    async def member_credits(self, guild_id: int, user_id: int, roles: Iterable[int]) -> MemberCredits:
        balance, _ = await self.balance(guild_id, user_id, roles)
        active, _ = await self.history.jobs_page(guild_id, user_id=user_id, statuses=_ACTIVE, limit=PAGE_SIZE)
        return MemberCredits(balance, active)

    async def jobs(
        self, guild_id: int, *, user_id: int | None = None, status: JobFilter | None = None, page: int = 1
    ) -> JobsPage:
        """One page of the guild's jobs for moderators, newest first."""
        statuses: list[str] | None = None
        if status == "active":
            statuses = _ACTIVE
        elif status is not None:
            statuses = [status]
        found, total = await self.history.jobs_page(
            guild_id, user_id=user_id, statuses=statuses, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        return JobsPage(found, page, max(1, -(-total // PAGE_SIZE)), total)

    async def usage(self, guild_id: int, period: Period | None = None) -> UsageSummary:
        """Spend in the current day, week or month (the guild's own period by default)."""
        policy = await self.credits.policy(guild_id)
        chosen = period or policy.period
        start, end = period_bounds(chosen, policy.timezone, self._clock())
        report = await self.credits.usage_report(guild_id, since=start, until=end)
        return UsageSummary(chosen, start, report, usage_csv(report))

    # -- moderator changes ---------------------------------------------------------------------

    async def set_allowance(
        self, guild_id: int, *, actor_id: int, user_id: int, roles: Iterable[int], credits: int | None
    ) -> Balance:
        """A member's own allowance per period; None returns them to the server/role default."""
        credits = check_optional("setquota.credits", credits)
        async with self.credits.transaction() as tx:
            await self.credits.set_member_allowance(guild_id, user_id, credits, tx)
            await self._audit(tx, guild_id, actor_id, "quota.set", target=user_id, credits=credits)
        balance, _ = await self.balance(guild_id, user_id, roles)
        return balance

    async def grant(
        self, guild_id: int, *, actor_id: int, user_id: int, roles: Iterable[int], credits: int
    ) -> Balance:
        """Extra credits valid until the period resets."""
        credits = check("grant.credits", credits)
        async with self.credits.transaction() as tx:
            await self.credits.add_grant(guild_id, user_id, credits, actor_id, tx)
            await self._audit(tx, guild_id, actor_id, "quota.grant", target=user_id, credits=credits)
        balance, _ = await self.balance(guild_id, user_id, roles)
        return balance

    async def reset_usage(
        self, guild_id: int, *, actor_id: int, user_id: int, roles: Iterable[int]
    ) -> Balance:
        """Forget what the member used this period (videos in progress stay reserved)."""
        async with self.credits.transaction() as tx:
            await self.credits.reset_member(guild_id, user_id, tx)
            await self._audit(tx, guild_id, actor_id, "quota.reset", target=user_id)
        balance, _ = await self.balance(guild_id, user_id, roles)
        return balance

    async def update_settings(self, guild_id: int, *, actor_id: int, change: SettingsChange) -> GuildSettings:
        """Validate and apply a settings change (nothing given: just show them). Every problem is a
        ``UserError`` naming the option, raised before anything is stored."""
        changes = self._policy_changes(change)
        async with self.credits.transaction() as tx:
            policy = await self.credits.policy(guild_id, tx)
            if changes:
                # replace() checks nothing: the whole policy is checked before it is saved.
                policy = check_policy(replace(policy, **changes))
                await self.credits.set_policy(guild_id, policy, tx)
                await self._audit(
                    tx,
                    guild_id,
                    actor_id,
                    "settings.changed",
                    **{k: _jsonable(v) for k, v in changes.items()},
                )
            roles = await self.credits.role_overrides(guild_id, tx)
        self._guild_limits.pop(guild_id, None)  # the next precheck reads what was just stored
        return GuildSettings(policy, roles, changed=bool(changes))

    async def set_role_override(
        self, guild_id: int, *, actor_id: int, override: RoleOverride
    ) -> GuildSettings:
        """A role's own allowance and/or concurrency; both None removes the override."""
        check_role_override(override)
        async with self.credits.transaction() as tx:
            await self.credits.set_role_override(guild_id, override, tx)
            await self._audit(
                tx,
                guild_id,
                actor_id,
                "role.override",
                role=override.role_id,
                allowance=override.allowance,
                max_concurrent=override.max_concurrent,
            )
            policy = await self.credits.policy(guild_id, tx)
            roles = await self.credits.role_overrides(guild_id, tx)
        self._guild_limits.pop(guild_id, None)
        return GuildSettings(policy, roles)

    # -- helpers -------------------------------------------------------------------------------

    async def _audit(
        self,
        tx: Transaction,
        guild_id: int,
        actor_id: int,
        action: str,
        *,
        target: int | None = None,
        **details: Any,
    ) -> None:
        await self.credits.audit(
            action, guild_id=guild_id, actor_id=actor_id, target_user_id=target, details=details, conn=tx
        )

    def _policy_changes(self, change: SettingsChange) -> dict[str, Any]:
        catalog = self.catalog
        changes: dict[str, Any] = {}
        if change.allowance is not None:
            changes["allowance"] = check("settings.allowance", change.allowance)
        if change.period is not None:
            changes["period"] = change.period
        if change.timezone is not None:
            zone(change.timezone)  # raises a UserError naming the problem
            changes["timezone"] = change.timezone
        if change.max_concurrent is not None:
            changes["max_concurrent"] = check("settings.max_concurrent", change.max_concurrent)
        if change.cooldown_seconds is not None:
            changes["cooldown_seconds"] = check("settings.cooldown", change.cooldown_seconds)
        if change.guild_cap is not None:
            changes["guild_cap"] = check("settings.guild_cap", change.guild_cap) or None
        if change.moderator_role_id is not None:
            changes["moderator_role_id"] = check("snowflake", change.moderator_role_id)
        if change.clear_moderator_role:
            changes["moderator_role_id"] = None
        if change.charge_moderation_blocked is not None:
            changes["charge_moderation_blocked"] = change.charge_moderation_blocked
        if change.channels is not None:
            items = _parse_list(change.channels, "channels")
            ids = tuple(int(m.group()) for item in items for m in [_ID.search(item)] if m)
            if len(ids) != len(items):
                raise UserError("Name channels as #mentions or ids, e.g. `#videos #art`, or `all`.")
            changes["allowed_channels"] = tuple(check("snowflake", i) for i in ids)
        if change.models is not None:
            chosen = _parse_list(change.models, "models")
            unknown = [m for m in chosen if catalog.get(m) is None]
            if unknown:
                raise UserError(
                    f"Unknown model(s): {', '.join(unknown)}. The catalog has {', '.join(m.name for m in catalog.models)}."
                )
            changes["allowed_models"] = chosen
        if change.sizes is not None:
            chosen = _parse_list(change.sizes, "sizes")
            unknown = [s for s in chosen if s not in catalog.all_sizes]
            if unknown:
                raise UserError(
                    f"Unknown size(s): {', '.join(unknown)}. Sizes: {', '.join(catalog.all_sizes)}."
                )
            changes["allowed_sizes"] = chosen
        if change.seconds is not None:
            chosen = _parse_list(change.seconds, "durations")
            among = ", ".join(map(str, catalog.all_seconds))
            # str.isdigit() is true for "²" and "١", which int() then refuses or reads as another
            # number: only ASCII digits are durations.
            if not all(_DURATION.fullmatch(s) for s in chosen):
                raise UserError(f"Durations must be among {among}, as whole seconds in digits 0-9.")
            durations = tuple(check("settings.seconds", int(s)) for s in chosen)
            if not all(s in catalog.all_seconds for s in durations):
                raise UserError(f"Durations must be among {among}.")
            changes["allowed_seconds"] = durations
        return changes
