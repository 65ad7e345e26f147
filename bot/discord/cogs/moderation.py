"""``/quota`` for members and the ``/videomod`` group for moderators.

``/videomod`` has Manage Server as its default permission, but admins can change command
permissions in the server settings, so every subcommand re-checks in code: Manage Server, or the
guild's configured moderator role.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.common import guild_id_of, role_ids
from bot.discord.presenter import NO_MENTIONS
from bot.domain.credits import Balance, GuildPolicy, RoleOverride, period_bounds, zone
from bot.domain.errors import UserError
from bot.domain.jobs import FINAL_STATUSES, Job, JobStatus

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot

PAGE_SIZE = 10
_ID = re.compile(r"\d{15,21}")
_CLEAR_WORDS = {"all", "any", "none", "clear", "*"}


def balance_lines(balance: Balance) -> list[str]:
    usage = balance.usage
    lines = [
        f"**{balance.remaining}** credits left of {balance.limits.allowance} ({balance.limits.source})",
        f"Used {usage.used} · reserved {usage.reserved} for videos in progress"
        + (f" · granted {usage.granted}" if usage.granted else ""),
        f"Resets <t:{int(balance.resets_at)}:R> (<t:{int(balance.resets_at)}:f>)",
        f"Videos at once: {usage.active_jobs} of {balance.limits.max_concurrent}",
    ]
    return lines


def job_line(job: Job) -> str:
    prompt = discord.utils.escape_markdown(job.prompt[:60] + ("…" if len(job.prompt) > 60 else ""))
    link = ""
    message_id = job.delivered_message_id or job.reply_message_id
    if job.guild_id and message_id:
        link = f" · [open](https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id})"
    return f"`#{job.id}` {job.status.label} · <@{job.user_id}> · {job.cost} cr · {prompt}{link}"


def _parse_list(text: str, what: str) -> tuple[str, ...]:
    items = tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)
    if len(items) == 1 and items[0].lower() in _CLEAR_WORDS:
        return ()
    if not items:
        raise UserError(f"Give the {what} separated by commas, or `all` to allow every one.")
    return items


class ModeratorCheck(NamedTuple):
    allowed: bool
    needs: str
    """What makes a member a moderator in this server, for refusals ("the Manage Server permission
    or the moderator role")."""


async def check_moderator(bot: VideoBot, interaction: discord.Interaction[Any]) -> ModeratorCheck:
    """Whether the member moderates videos here: Manage Server, or the guild's moderator role.

    Used by ``/videomod`` and by the job buttons (cancel, remix, again, details), so both agree on
    who a moderator is."""
    guild_id = guild_id_of(interaction)
    user = interaction.user
    policy = await bot.jobs.credits.policy(guild_id)
    needs = "the Manage Server permission" + (" or the moderator role" if policy.moderator_role_id else "")
    if isinstance(user, discord.Member) and user.guild_permissions.manage_guild:
        return ModeratorCheck(True, needs)
    if policy.moderator_role_id is not None and policy.moderator_role_id in role_ids(user):
        return ModeratorCheck(True, needs)
    return ModeratorCheck(False, needs)


class NotModerator(app_commands.CheckFailure):
    """Raised by the group's check; its message is shown to the member (checks must raise
    ``CheckFailure`` for discord.py to route them to the tree's error handler)."""


class ModeratorGroup(app_commands.Group):
    def __init__(self, bot: VideoBot) -> None:
        super().__init__(
            name="videomod",
            description="Moderate video credits and jobs",
            guild_only=True,
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        check = await check_moderator(self.bot, interaction)
        if check.allowed:
            return True
        raise NotModerator(f"Only moderators can use /videomod: you need {check.needs}.")

    async def _audit(self, interaction: discord.Interaction[Any], action: str, **details: Any) -> None:
        target = details.pop("target", None)
        await self.bot.jobs.credits.audit(
            action,
            guild_id=interaction.guild_id,
            actor_id=interaction.user.id,
            target_user_id=target,
            details=details,
        )

    async def _reply(self, interaction: discord.Interaction[Any], text: str, **kwargs: Any) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **kwargs)

    @app_commands.command(name="quota", description="Show a member's credits")
    @app_commands.describe(user="The member")
    async def quota(self, interaction: discord.Interaction[Any], user: discord.Member) -> None:
        balance, _ = await self.bot.jobs.balance(guild_id_of(interaction), user.id, role_ids(user))
        await self._reply(interaction, f"Credits of {user.mention}:\n" + "\n".join(balance_lines(balance)))

    @app_commands.command(name="setquota", description="Set a member's allowance per period")
    @app_commands.describe(
        user="The member", credits="Credits per period; leave empty to use the server/role default"
    )
    async def setquota(
        self,
        interaction: discord.Interaction[Any],
        user: discord.Member,
        credits: app_commands.Range[int, 0, 1_000_000] | None = None,
    ) -> None:
        guild_id = guild_id_of(interaction)
        async with self.bot.store.transaction() as conn:
            await self.bot.jobs.credits.set_member_allowance(guild_id, user.id, credits, conn)
        await self._audit(interaction, "quota.set", target=user.id, credits=credits)
        balance, _ = await self.bot.jobs.balance(guild_id, user.id, role_ids(user))
        what = f"set to {credits} credits" if credits is not None else "back to the default"
        await self._reply(
            interaction, f"Allowance of {user.mention} {what}.\n" + "\n".join(balance_lines(balance))
        )

    @app_commands.command(name="grant", description="Give a member extra credits for the current period")
    @app_commands.describe(user="The member", credits="Extra credits (valid until the period resets)")
    async def grant(
        self,
        interaction: discord.Interaction[Any],
        user: discord.Member,
        credits: app_commands.Range[int, 1, 1_000_000],
    ) -> None:
        guild_id = guild_id_of(interaction)
        async with self.bot.store.transaction() as conn:
            await self.bot.jobs.credits.add_grant(guild_id, user.id, credits, interaction.user.id, conn)
        await self._audit(interaction, "quota.grant", target=user.id, credits=credits)
        balance, _ = await self.bot.jobs.balance(guild_id, user.id, role_ids(user))
        await self._reply(
            interaction, f"Granted {credits} credits to {user.mention}.\n" + "\n".join(balance_lines(balance))
        )

    @app_commands.command(name="resetquota", description="Forget what a member used this period")
    @app_commands.describe(user="The member")
    async def resetquota(self, interaction: discord.Interaction[Any], user: discord.Member) -> None:
        guild_id = guild_id_of(interaction)
        async with self.bot.store.transaction() as conn:
            await self.bot.jobs.credits.reset_member(guild_id, user.id, conn)
        await self._audit(interaction, "quota.reset", target=user.id)
        balance, _ = await self.bot.jobs.balance(guild_id, user.id, role_ids(user))
        await self._reply(
            interaction, f"Usage of {user.mention} reset.\n" + "\n".join(balance_lines(balance))
        )

    @app_commands.command(name="jobs", description="List video jobs")
    @app_commands.describe(
        user="Only this member's jobs", status="Only jobs in this state", page="Page number"
    )
    async def jobs(
        self,
        interaction: discord.Interaction[Any],
        user: discord.Member | None = None,
        status: Literal["active", "completed", "failed", "cancelled"] | None = None,
        page: app_commands.Range[int, 1, 10_000] = 1,
    ) -> None:
        statuses: list[str] | None = None
        if status == "active":
            statuses = [s.value for s in JobStatus if s not in FINAL_STATUSES]
        elif status is not None:
            statuses = [status]
        found, total = await self.bot.jobs.credits.jobs_page(
            guild_id_of(interaction),
            user_id=user.id if user else None,
            statuses=statuses,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        pages = max(1, -(-total // PAGE_SIZE))
        if not found:
            await self._reply(
                interaction, "No jobs match." if page == 1 else f"There are only {pages} page(s)."
            )
            return
        embed = discord.Embed(title=f"Video jobs · page {page} of {pages} · {total} in all")
        embed.description = "\n".join(job_line(job) for job in found)
        if page < pages:
            embed.set_footer(text=f"Next: /videomod jobs page:{page + 1}")
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="cancel", description="Cancel a job and refund its credits")
    @app_commands.describe(job="The job number (shown as Job #N on its card)")
    async def cancel(self, interaction: discord.Interaction[Any], job: int) -> None:
        guild_id = guild_id_of(interaction)
        found = await self.bot.store.get_job(job)
        if found is None or found.guild_id != guild_id:
            raise UserError(f"There is no job #{job} in this server. `/videomod jobs` lists them.")
        cancelled = await self.bot.jobs.cancel(
            found.id, actor_id=interaction.user.id, presenter=self.bot.presenter
        )
        await self._reply(
            interaction, f"Cancelled job #{job} of <@{cancelled.user_id}>; {cancelled.cost} credits refunded."
        )

    @app_commands.command(name="settings", description="Show or change this server's video settings")
    @app_commands.describe(
        allowance="Credits per member per period",
        period="How often credits reset",
        timezone="Time zone of the reset, e.g. UTC or Europe/Paris",
        max_concurrent="Videos one member may have in progress at once",
        cooldown="Seconds between one member's requests",
        guild_cap="Credits the whole server may spend per period (0 = no cap)",
        moderator_role="A role that may use /videomod besides Manage Server",
        clear_moderator_role="Remove the moderator role (only Manage Server then)",
        charge_moderation_blocked="Charge for prompts the provider's moderation blocked",
        channels="Channels where /video works, e.g. #videos #art (or `all`)",
        models="Allowed models, comma-separated (or `all`)",
        sizes="Allowed sizes, comma-separated (or `all`)",
        seconds="Allowed durations, comma-separated (or `all`)",
    )
    async def settings(
        self,
        interaction: discord.Interaction[Any],
        allowance: app_commands.Range[int, 0, 1_000_000] | None = None,
        period: Literal["day", "week", "month"] | None = None,
        timezone: str | None = None,
        max_concurrent: app_commands.Range[int, 1, 50] | None = None,
        cooldown: app_commands.Range[int, 0, 86_400] | None = None,
        guild_cap: app_commands.Range[int, 0, 100_000_000] | None = None,
        moderator_role: discord.Role | None = None,
        clear_moderator_role: bool = False,
        charge_moderation_blocked: bool | None = None,
        channels: str | None = None,
        models: str | None = None,
        sizes: str | None = None,
        seconds: str | None = None,
    ) -> None:
        guild_id = guild_id_of(interaction)
        catalog = self.bot.catalog
        changes: dict[str, Any] = {}
        if allowance is not None:
            changes["allowance"] = allowance
        if period is not None:
            changes["period"] = period
        if timezone is not None:
            zone(timezone)  # raises a UserError naming the problem
            changes["timezone"] = timezone
        if max_concurrent is not None:
            changes["max_concurrent"] = max_concurrent
        if cooldown is not None:
            changes["cooldown_seconds"] = cooldown
        if guild_cap is not None:
            changes["guild_cap"] = guild_cap or None
        if moderator_role is not None:
            changes["moderator_role_id"] = moderator_role.id
        if clear_moderator_role:
            changes["moderator_role_id"] = None
        if charge_moderation_blocked is not None:
            changes["charge_moderation_blocked"] = charge_moderation_blocked
        if channels is not None:
            items = _parse_list(channels, "channels")
            ids = tuple(int(m.group()) for item in items for m in [_ID.search(item)] if m)
            if len(ids) != len(items):
                raise UserError("Name channels as #mentions or ids, e.g. `#videos #art`, or `all`.")
            changes["allowed_channels"] = ids
        if models is not None:
            chosen = _parse_list(models, "models")
            unknown = [m for m in chosen if catalog.get(m) is None]
            if unknown:
                raise UserError(
                    f"Unknown model(s): {', '.join(unknown)}. The catalog has {', '.join(m.name for m in catalog.models)}."
                )
            changes["allowed_models"] = chosen
        if sizes is not None:
            chosen = _parse_list(sizes, "sizes")
            unknown = [s for s in chosen if s not in catalog.all_sizes]
            if unknown:
                raise UserError(
                    f"Unknown size(s): {', '.join(unknown)}. Sizes: {', '.join(catalog.all_sizes)}."
                )
            changes["allowed_sizes"] = chosen
        if seconds is not None:
            chosen = _parse_list(seconds, "durations")
            if not all(s.isdigit() and int(s) in catalog.all_seconds for s in chosen):
                raise UserError(f"Durations must be among {', '.join(map(str, catalog.all_seconds))}.")
            changes["allowed_seconds"] = tuple(int(s) for s in chosen)
        async with self.bot.store.transaction() as conn:
            policy = await self.bot.jobs.credits.policy(guild_id, conn)
            if changes:
                policy = replace(policy, **changes)
                await self.bot.jobs.credits.set_policy(guild_id, policy, conn)
        if changes:
            await self._audit(
                interaction, "settings.changed", **{k: _jsonable(v) for k, v in changes.items()}
            )
        roles = await self.bot.jobs.credits.role_overrides(guild_id)
        title = "Settings updated" if changes else "Video settings"
        await interaction.response.send_message(
            embed=settings_embed(policy, roles, title), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="role", description="Give a role its own allowance or concurrency")
    @app_commands.describe(
        role="The role",
        allowance="Credits per period for members with this role (empty: no override)",
        max_concurrent="Videos at once for members with this role (empty: no override)",
    )
    async def role(
        self,
        interaction: discord.Interaction[Any],
        role: discord.Role,
        allowance: app_commands.Range[int, 0, 1_000_000] | None = None,
        max_concurrent: app_commands.Range[int, 1, 50] | None = None,
    ) -> None:
        guild_id = guild_id_of(interaction)
        async with self.bot.store.transaction() as conn:
            await self.bot.jobs.credits.set_role_override(
                guild_id, RoleOverride(role.id, allowance, max_concurrent), conn
            )
        await self._audit(
            interaction, "role.override", role=role.id, allowance=allowance, max_concurrent=max_concurrent
        )
        policy = await self.bot.jobs.credits.policy(guild_id)
        roles = await self.bot.jobs.credits.role_overrides(guild_id)
        await interaction.response.send_message(
            embed=settings_embed(policy, roles, "Role overrides updated"),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="usage", description="Usage report with estimated spend, and a CSV")
    @app_commands.describe(period="Which period (default: the server's)")
    async def usage(
        self, interaction: discord.Interaction[Any], period: Literal["day", "week", "month"] | None = None
    ) -> None:
        guild_id = guild_id_of(interaction)
        policy = await self.bot.jobs.credits.policy(guild_id)
        chosen = period or policy.period
        start, end = period_bounds(chosen, policy.timezone, self.bot.jobs._clock())
        report = await self.bot.jobs.credits.usage_report(guild_id, since=start, until=end)
        embed = usage_embed(report, chosen, start)
        file = discord.File(io.BytesIO(usage_csv(report).encode()), filename=f"videobot-usage-{chosen}.csv")
        await interaction.response.send_message(
            embed=embed, file=file, ephemeral=True, allowed_mentions=NO_MENTIONS
        )


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def settings_embed(policy: GuildPolicy, roles: list[RoleOverride], title: str) -> discord.Embed:
    def listed(items: tuple[Any, ...], fmt: str = "{}") -> str:
        return ", ".join(fmt.format(i) for i in items) if items else "all"

    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    embed.add_field(
        name="Allowance", value=f"{policy.allowance} credits per {policy.period} ({policy.timezone})"
    )
    embed.add_field(name="At once", value=str(policy.max_concurrent))
    embed.add_field(name="Cooldown", value=f"{policy.cooldown_seconds} s")
    embed.add_field(name="Server cap", value=f"{policy.guild_cap} credits" if policy.guild_cap else "none")
    embed.add_field(
        name="Moderator role", value=f"<@&{policy.moderator_role_id}>" if policy.moderator_role_id else "none"
    )
    embed.add_field(name="Charge blocked prompts", value="yes" if policy.charge_moderation_blocked else "no")
    embed.add_field(name="Channels", value=listed(policy.allowed_channels, "<#{}>"), inline=False)
    embed.add_field(name="Models", value=listed(policy.allowed_models))
    embed.add_field(name="Sizes", value=listed(policy.allowed_sizes))
    embed.add_field(name="Durations", value=listed(policy.allowed_seconds, "{} s"))
    if roles:
        lines = [
            f"<@&{r.role_id}>: "
            + ", ".join(
                part
                for part in (
                    f"{r.allowance} credits" if r.allowance is not None else "",
                    f"{r.max_concurrent} at once" if r.max_concurrent is not None else "",
                )
                if part
            )
            for r in roles
        ]
        embed.add_field(name="Role overrides", value="\n".join(lines)[:1024], inline=False)
    return embed


def usage_embed(report: dict[str, Any], period: str, start: float) -> discord.Embed:
    embed = discord.Embed(
        title=f"Usage this {period} (since <t:{int(start)}:d>)", colour=discord.Colour.blurple()
    )
    totals: dict[str, list[float]] = {}
    for row in report["by_model"]:
        if row["charge_state"] != "charged":
            continue
        entry = totals.setdefault(row["model"], [0, 0, 0, 0.0])
        entry[0] += row["jobs"]
        entry[1] += row["seconds"] or 0
        entry[2] += row["credits"] or 0
        entry[3] += row["usd"] or 0.0
    if totals:
        embed.description = "\n".join(
            f"`{model}`: {int(j)} videos · {int(s)} s · {int(c)} credits · ~${usd:.2f}"
            for model, (j, s, c, usd) in totals.items()
        )
    else:
        embed.description = "No delivered videos in this period."
    refunded = sum(row["jobs"] for row in report["by_model"] if row["charge_state"] == "refunded")
    embed.add_field(name="Failed or cancelled (refunded)", value=str(refunded))
    if report["top_members"]:
        embed.add_field(
            name="Top members",
            value="\n".join(
                f"<@{m['user_id']}>: {m['credits']} credits · {m['jobs']} videos"
                for m in report["top_members"]
            ),
            inline=False,
        )
    embed.set_footer(text="USD is an estimate from the catalog's prices.")
    return embed


def usage_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["section", "model_or_user", "status", "charge_state", "jobs", "seconds", "credits", "usd"]
    )
    for row in report["by_model"]:
        writer.writerow(
            [
                "model",
                row["model"],
                row["status"],
                row["charge_state"],
                row["jobs"],
                row["seconds"],
                row["credits"],
                f"{row['usd'] or 0:.2f}",
            ]
        )
    for row in report["top_members"]:
        writer.writerow(
            [
                "member",
                row["user_id"],
                "",
                "charged",
                row["jobs"],
                row["seconds"],
                row["credits"],
                f"{row['usd'] or 0:.2f}",
            ]
        )
    return out.getvalue()


class CreditsCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.moderator_group = ModeratorGroup(bot)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.moderator_group)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.moderator_group.name)

    @app_commands.command(name="quota", description="Your video credits: left, reserved, and when they reset")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction[Any]) -> None:
        guild_id = guild_id_of(interaction)
        balance, _ = await self.bot.jobs.balance(guild_id, interaction.user.id, role_ids(interaction.user))
        lines = balance_lines(balance)
        active, _ = await self.bot.jobs.credits.jobs_page(
            guild_id,
            user_id=interaction.user.id,
            statuses=[s.value for s in JobStatus if s not in FINAL_STATUSES],
            limit=PAGE_SIZE,
        )
        if active:
            lines.append("**In progress**")
            lines.extend(job_line(job) for job in active)
        await interaction.response.send_message(
            "\n".join(lines), ephemeral=True, allowed_mentions=NO_MENTIONS
        )
