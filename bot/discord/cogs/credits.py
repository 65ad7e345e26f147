"""``/quota`` for members and the ``/videomod`` group for moderators.

``/videomod`` has Manage Server as its default permission, but admins can change command
permissions in the server settings, so every subcommand re-checks in code: Manage Server, or the
guild's configured moderator role.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.common import guild_id_of, role_ids
from bot.discord.embeds import queue_text
from bot.discord.presenter import NO_MENTIONS
from bot.discord.text import inert_inline
from bot.domain.bounds import check
from bot.domain.credits import Balance, GuildPolicy, Limits, RoleOverride, UsageReport
from bot.domain.errors import UserError
from bot.domain.jobs import Job
from bot.domain.messages import credits_text
from bot.services.credits import JobFilter, SettingsChange

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot


def limits_source(limits: Limits) -> str:
    """Where a member's allowance comes from, a role as its mention."""
    if limits.source == "role" and limits.source_role_id is not None:
        return f"role <@&{limits.source_role_id}>"
    return limits.source


def balance_lines(balance: Balance) -> list[str]:
    usage = balance.usage
    lines = [
        f"**{balance.remaining}** credits left of {balance.limits.allowance} ({limits_source(balance.limits)})",
        f"Used {usage.used} · reserved {usage.reserved} for videos in progress"
        + (f" · granted {usage.granted}" if usage.granted else ""),
        f"Resets <t:{int(balance.resets_at)}:R> (<t:{int(balance.resets_at)}:f>)",
        f"Videos at once: {usage.active_jobs} of {balance.limits.max_concurrent}",
    ]
    return lines


def job_line(job: Job) -> str:
    prompt = inert_inline(job.prompt, 60)
    link = ""
    message_id = job.delivered_message_id or job.reply_message_id
    if job.guild_id and message_id:
        link = f" · [open](https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id})"
    return f"`#{job.id}` {job.status.label} · <@{job.user_id}> · {job.cost} cr · {prompt}{link}"


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
    policy = await bot.credits.policy(guild_id)
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
    """``/videomod``: each subcommand parses its options, calls one ``CreditsService`` method and
    renders the result (``cancel`` goes through the bot, which also stops the job at the provider)."""

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

    async def _reply(self, interaction: discord.Interaction[Any], text: str, **kwargs: Any) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **kwargs)

    @app_commands.command(name="quota", description="Show a member's credits")
    @app_commands.describe(user="The member")
    async def quota(self, interaction: discord.Interaction[Any], user: discord.Member) -> None:
        balance, _ = await self.bot.credits.balance(guild_id_of(interaction), user.id, role_ids(user))
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
        balance = await self.bot.credits.set_allowance(
            guild_id_of(interaction),
            actor_id=interaction.user.id,
            user_id=user.id,
            roles=role_ids(user),
            credits=credits,
        )
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
        balance = await self.bot.credits.grant(
            guild_id_of(interaction),
            actor_id=interaction.user.id,
            user_id=user.id,
            roles=role_ids(user),
            credits=credits,
        )
        await self._reply(
            interaction, f"Granted {credits} credits to {user.mention}.\n" + "\n".join(balance_lines(balance))
        )

    @app_commands.command(name="resetquota", description="Forget what a member used this period")
    @app_commands.describe(user="The member")
    async def resetquota(self, interaction: discord.Interaction[Any], user: discord.Member) -> None:
        balance = await self.bot.credits.reset_usage(
            guild_id_of(interaction), actor_id=interaction.user.id, user_id=user.id, roles=role_ids(user)
        )
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
        status: JobFilter | None = None,
        page: app_commands.Range[int, 1, 10_000] = 1,
    ) -> None:
        # Range is enforced by Discord's client only; discord.py passes a forged number through.
        page = check("jobs.page", page)
        found = await self.bot.credits.jobs(
            guild_id_of(interaction), user_id=user.id if user else None, status=status, page=page
        )
        if not found.jobs:
            await self._reply(
                interaction, "No jobs match." if page == 1 else f"There are only {found.pages} page(s)."
            )
            return
        embed = discord.Embed(title=f"Video jobs · page {page} of {found.pages} · {found.total} in all")
        embed.description = "\n".join(job_line(job) for job in found.jobs)
        if page < found.pages:
            embed.set_footer(text=f"Next: /videomod jobs page:{page + 1}")
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="cancel", description="Cancel a job and refund its credits")
    @app_commands.describe(job="The job number (shown as Job #N on its card)")
    async def cancel(self, interaction: discord.Interaction[Any], job: int) -> None:
        job = check("job", job)
        guild_id = guild_id_of(interaction)
        found = await self.bot.jobs.get(job)
        if found is None or found.guild_id != guild_id:
            raise UserError(f"There is no job #{job} in this server. `/videomod jobs` lists them.")
        cancelled = await self.bot.jobs.cancel(
            found.id, actor_id=interaction.user.id, presenter=self.bot.presenter
        )
        await self._reply(
            interaction,
            f"Cancelled job #{job} of <@{cancelled.user_id}>; {credits_text(cancelled.cost)} refunded.",
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
        change = SettingsChange(
            allowance=allowance,
            period=period,
            timezone=timezone,
            max_concurrent=max_concurrent,
            cooldown_seconds=cooldown,
            guild_cap=guild_cap,
            moderator_role_id=moderator_role.id if moderator_role is not None else None,
            clear_moderator_role=clear_moderator_role,
            charge_moderation_blocked=charge_moderation_blocked,
            channels=channels,
            models=models,
            sizes=sizes,
            seconds=seconds,
        )
        result = await self.bot.credits.update_settings(
            guild_id_of(interaction), actor_id=interaction.user.id, change=change
        )
        title = "Settings updated" if result.changed else "Video settings"
        await interaction.response.send_message(
            embed=settings_embed(result.policy, result.roles, title),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
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
        result = await self.bot.credits.set_role_override(
            guild_id_of(interaction),
            actor_id=interaction.user.id,
            override=RoleOverride(role.id, allowance, max_concurrent),
        )
        await interaction.response.send_message(
            embed=settings_embed(result.policy, result.roles, "Role overrides updated"),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="usage", description="Usage report with estimated spend, and a CSV")
    @app_commands.describe(period="Which period (default: the server's)")
    async def usage(
        self, interaction: discord.Interaction[Any], period: Literal["day", "week", "month"] | None = None
    ) -> None:
        summary = await self.bot.credits.usage(guild_id_of(interaction), period)
        embed = usage_embed(summary.report, summary.period, summary.start)
        file = discord.File(io.BytesIO(summary.csv.encode()), filename=f"videobot-usage-{summary.period}.csv")
        await interaction.response.send_message(
            embed=embed, file=file, ephemeral=True, allowed_mentions=NO_MENTIONS
        )


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


def usage_embed(report: UsageReport, period: str, start: float) -> discord.Embed:
    embed = discord.Embed(
        title=f"Usage this {period} (since <t:{int(start)}:d>)", colour=discord.Colour.blurple()
    )
    totals: dict[str, list[float]] = {}
    for row in report.by_model:
        if row.charge_state != "charged":
            continue
        entry = totals.setdefault(row.model, [0, 0, 0, 0.0])
        entry[0] += row.jobs
        entry[1] += row.seconds or 0
        entry[2] += row.credits or 0
        entry[3] += row.usd or 0.0
    if totals:
        embed.description = "\n".join(
            f"`{model}`: {int(j)} videos · {int(s)} s · {int(c)} credits · ~${usd:.2f}"
            for model, (j, s, c, usd) in totals.items()
        )
    else:
        embed.description = "No delivered videos in this period."
    refunded = sum(row.jobs for row in report.by_model if row.charge_state == "refunded")
    embed.add_field(name="Failed or cancelled (refunded)", value=str(refunded))
    if report.top_members:
        embed.add_field(
            name="Top members",
            value="\n".join(
                f"<@{m.user_id}>: {m.credits} credits · {m.jobs} videos" for m in report.top_members
            ),
            inline=False,
        )
    embed.set_footer(text="USD is an estimate from the catalog's prices.")
    return embed


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
        mine = await self.bot.credits.member_credits(
            guild_id_of(interaction), interaction.user.id, role_ids(interaction.user)
        )
        lines = balance_lines(mine.balance)
        if mine.in_progress:
            lines.append("**In progress**")
            lines.extend(job_line(job) for job in mine.in_progress)
        queued = [(job, self.bot.tracker.queue_place(job.id)) for job in mine.in_progress]
        waiting = [(job, place) for job, place in queued if place is not None]
        if waiting:
            lines.append("**Waiting for the provider**")
            lines.extend(
                f"`#{job.id}` {queue_text(place)}" for job, place in sorted(waiting, key=lambda w: w[1].place)
            )
        await interaction.response.send_message(
            "\n".join(lines), ephemeral=True, allowed_mentions=NO_MENTIONS
        )
