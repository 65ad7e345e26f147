"""Real discord.py 2.7 against the fake Discord in tests/fakes/discord/.

These tests pin down that the fake is faithful enough for the bot's own tests: a stock
``discord.Client`` + ``app_commands.CommandTree`` logs in, connects, syncs, receives interactions
and answers them, and the fake records what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import pytest
from discord import app_commands

from tests.fakes.discord import (
    ROUTE_CALLBACK,
    ROUTE_CHANNEL_MESSAGE,
    ROUTE_CHANNEL_MESSAGES,
    ROUTE_GLOBAL_COMMANDS,
    ROUTE_GUILD_COMMANDS,
    ROUTE_ORIGINAL,
    ROUTE_WEBHOOK,
    FakeDiscord,
    Permission,
    StoredMessage,
    patched_discord,
)

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0  # upper bound for any single wait; everything normally completes in milliseconds


@pytest.fixture(autouse=True)
def _discord_points_at_the_fake(fake: FakeDiscord) -> Iterator[None]:
    """A stock client has no base-URL settings: point discord.py itself at the fake."""
    with patched_discord(fake):
        yield


class Bot(discord.Client):
    """The smallest client shaped like videobot: slash commands + views, no privileged intents."""

    def __init__(self, *, intents: discord.Intents | None = None) -> None:
        # guild_ready_timeout: discord.py delays on_ready until no GUILD_CREATE arrived for this long
        # (default 2 s). The fake sends them back to back, so a short window keeps tests fast.
        super().__init__(intents=intents or discord.Intents.default(), guild_ready_timeout=0.2)
        self.tree = app_commands.CommandTree(self)


async def wait_ready(client: discord.Client, start_task: asyncio.Task[None]) -> None:
    """Wait for on_ready, but surface a failed login/connect instead of timing out on it."""
    ready = asyncio.create_task(client.wait_until_ready())
    done, _ = await asyncio.wait({ready, start_task}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if start_task in done:
        ready.cancel()
        start_task.result()  # raises the login/connection error
        raise AssertionError("client.start() returned before the client was ready")
    if ready not in done:
        ready.cancel()
        raise TimeoutError("client did not become ready")


@contextlib.asynccontextmanager
async def running(client: Bot, fake: FakeDiscord, *, sync_guild: bool = True) -> AsyncIterator[Bot]:
    task = asyncio.create_task(client.start(fake.token))
    try:
        await wait_ready(client, task)
        if sync_guild:
            await client.tree.sync(guild=discord.Object(fake.guild_id))
        yield client
    finally:
        await asyncio.wait_for(client.close(), WAIT)
        await asyncio.wait_for(task, WAIT)


# ------------------------------------------------------------------------------------------------


async def test_client_connects_caches_guild_and_syncs(fake: FakeDiscord) -> None:
    client = Bot()
    seen_ready = asyncio.Event()

    @client.event
    async def on_ready() -> None:
        seen_ready.set()

    @client.tree.command(description="Check the bot is alive")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    async with running(client, fake, sync_guild=False):
        assert seen_ready.is_set()
        assert client.user is not None and client.user.id == fake.application_id
        assert client.application_id == fake.application_id

        guild = client.get_guild(fake.guild_id)
        assert guild is not None and not guild.unavailable
        assert guild.name == fake.guild["name"]
        general = guild.get_channel(fake.channel_id)
        assert isinstance(general, discord.TextChannel) and general.name == "general"
        assert isinstance(general.category, discord.CategoryChannel)
        assert guild.default_role.id == guild.id
        assert {r.name for r in guild.roles} == {"@everyone", "videobot"}
        # Default intents have no GUILD_MEMBERS/PRESENCES: only our own member is cached, but the
        # real member count is known and nothing tried to chunk.
        assert guild.me is not None and guild.me.id == fake.application_id
        assert guild.member_count == 3 and len(guild.members) == 1
        perms = general.permissions_for(guild.me)
        assert perms.send_messages and perms.attach_files and perms.embed_links
        assert not any(p["op"] == 8 for p in fake.gateway_received)
        identify = next(p for p in fake.gateway_received if p["op"] == 2)
        assert identify["d"]["intents"] == discord.Intents.default().value

        # REST reads of the world model parse cleanly.
        alice = await guild.fetch_member(int(fake.default_user["id"]))
        assert alice.name == "alice" and alice.guild_permissions.send_messages

        synced_guild = await client.tree.sync(guild=guild)  # no guild commands → empty PUT
        assert synced_guild == []
        synced = await client.tree.sync()
        assert [c.name for c in synced] == ["ping"] and synced[0].id > 0
        assert fake.get_command("ping") is not None

    puts = [r for r in fake.requests if r.method == "PUT"]
    assert [r.route for r in puts] == [ROUTE_GUILD_COMMANDS, ROUTE_GLOBAL_COMMANDS]
    assert puts[1].json[0]["name"] == "ping" and puts[1].json[0]["type"] == 1
    bot_requests = [
        r for r in fake.requests if r.route and not r.route.startswith(("/webhooks", "/interactions"))
    ]
    assert all(r.authorization == "Bot fake-token" for r in bot_requests)
    assert fake.unhandled_requests == []


async def test_wrong_token_fails_login(fake: FakeDiscord) -> None:
    client = Bot()
    with pytest.raises(discord.LoginFailure):
        await asyncio.wait_for(client.start("not-the-token"), WAIT)
    await client.close()
    assert fake.requests[-1].status == 401


async def test_slash_command_ephemeral_reply(fake: FakeDiscord) -> None:
    client = Bot()
    ran = asyncio.Event()

    @client.tree.command(description="Check the bot is alive")
    async def ping(interaction: discord.Interaction) -> None:
        ran.set()
        assert interaction.filesize_limit == fake.attachment_size_limit
        await interaction.response.send_message("pong", ephemeral=True)

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        handle = await fake.invoke_command("ping")
        callback = await handle.wait_response(WAIT)
        assert ran.is_set()

    assert callback.route == ROUTE_CALLBACK and callback.status == 200
    assert callback.query.get("with_response") == "1"  # discord.py 2.5+ always asks for the resource
    assert callback.authorization is None  # interaction routes are authenticated by the token
    assert callback.json["type"] == 4
    assert callback.json["data"]["content"] == "pong"
    assert callback.json["data"]["flags"] == 64
    original = await handle.original_message(WAIT)
    assert original.ephemeral and original.content == "pong" and original.interaction_token == handle.token
    assert callback.response_json["interaction"]["response_message_id"] == str(original.id)


async def test_attachment_option_defer_edit_and_followup_file(fake: FakeDiscord) -> None:
    client = Bot()
    got: dict[str, Any] = {}

    @client.tree.command(description="Animate an image")
    @app_commands.describe(prompt="What should happen", image="Starting frame")
    async def video(interaction: discord.Interaction, prompt: str, image: discord.Attachment) -> None:
        await interaction.response.defer(thinking=True)
        got["prompt"], got["filename"], got["bytes"] = prompt, image.filename, await image.read()
        await interaction.edit_original_response(embed=discord.Embed(title="Rendering", description=prompt))
        video_file = discord.File(io.BytesIO(b"\x00\x00\x00\x18ftypmp42" + b"v" * 64), "out.mp4")
        await interaction.followup.send("done", file=video_file)

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        image = fake.add_attachment(b"\x89PNG fake image bytes", "cat.png", "image/png", width=64, height=64)
        handle = await fake.invoke_command("video", {"prompt": "a cat surfing", "image": image})
        followup = await handle.wait_followup(WAIT)

    assert got == {"prompt": "a cat surfing", "filename": "cat.png", "bytes": b"\x89PNG fake image bytes"}
    assert handle.payload["data"]["options"][1] == {"type": 11, "name": "image", "value": image["id"]}
    assert handle.payload["data"]["resolved"]["attachments"][image["id"]]["url"].startswith(fake.base_url)

    defer = await handle.wait_response(WAIT)
    assert defer.json == {"type": 5}
    original = await handle.original_message(WAIT)
    assert not original.loading  # the PATCH completed the "thinking" state
    assert original.embeds[0]["title"] == "Rendering"
    [edit] = original.edits
    assert edit.route == ROUTE_ORIGINAL and edit.before["flags"] & 128

    post = next(r for r in handle.requests() if r.route == ROUTE_WEBHOOK)
    assert post.is_multipart and post.json["content"] == "done"
    [uploaded] = post.files
    assert uploaded.filename == "out.mp4" and uploaded.data.startswith(b"\x00\x00\x00\x18ftyp")
    [stored] = followup.attachments
    assert stored.filename == "out.mp4" and stored.content_type == "video/mp4"
    assert stored.data == uploaded.data and stored.size == len(uploaded.data)
    assert followup.interaction_metadata is not None
    assert followup.interaction_metadata["original_response_message_id"] == str(original.id)


async def test_followup_after_thinking_defer_replaces_loading_message(fake: FakeDiscord) -> None:
    client = Bot()

    @client.tree.command(description="Slow")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("finally")

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        handle = await fake.invoke_command("slow")
        original = await handle.original_message(WAIT, predicate=lambda m: not m.loading)

    # Discord semantics: the first followup fills the deferred message and keeps its ephemerality.
    assert original.content == "finally" and original.ephemeral
    assert handle.followups == []


async def test_button_modal_and_autocomplete(fake: FakeDiscord) -> None:
    client = Bot()
    submitted: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    class PromptModal(discord.ui.Modal, title="Describe the video"):
        prompt = discord.ui.TextInput(label="Prompt")
        style = discord.ui.Label(text="Style", component=discord.ui.TextInput(custom_id="style"))

        async def on_submit(self, interaction: discord.Interaction) -> None:
            assert isinstance(self.style.component, discord.ui.TextInput)
            await submitted.put((self.prompt.value, self.style.component.value))
            await interaction.response.send_message("queued", ephemeral=True)

    class Panel(discord.ui.View):
        @discord.ui.button(label="New video", custom_id="panel:new", style=discord.ButtonStyle.primary)
        async def new(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
            await interaction.response.send_modal(PromptModal())

    @client.tree.command(description="Open the panel")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Make a video:", view=Panel())

    styles = ["anime", "claymation", "cinematic"]

    @client.tree.command(description="Pick a style")
    async def style(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @style.autocomplete("name")
    async def style_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=s, value=s) for s in styles if s.startswith(current)]

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        shown = await (await fake.invoke_command("panel")).original_message(WAIT)
        assert shown.content == "Make a video:" and not shown.ephemeral
        assert shown.components[0]["components"][0]["custom_id"] == "panel:new"

        click = await fake.invoke_component(shown, "panel:new")
        modal = await click.modal(WAIT)
        assert modal["title"] == "Describe the video"
        submit = await fake.submit_modal(modal["custom_id"], {"Prompt": "a red fox", "style": "anime"})
        assert await asyncio.wait_for(submitted.get(), WAIT) == ("a red fox", "anime")
        reply = await submit.original_message(WAIT)
        assert reply.content == "queued" and reply.ephemeral
        # The modal came from a button, so Discord attaches the button's message.
        assert submit.payload["message"]["id"] == str(shown.id)

        typing = await fake.autocomplete("style", {"name": "c"})
        assert await typing.choices(WAIT) == [
            {"name": "claymation", "value": "claymation"},
            {"name": "cinematic", "value": "cinematic"},
        ]
        assert typing.payload["data"]["options"] == [
            {"type": 3, "name": "name", "value": "c", "focused": True}
        ]


async def test_expired_token_and_bot_token_routes(fake: FakeDiscord) -> None:
    client = Bot()
    interactions: asyncio.Queue[discord.Interaction] = asyncio.Queue()

    @client.tree.command(description="Start something long")
    async def long(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("working…")
        await interactions.put(interaction)

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        handle = await fake.invoke_command("long")
        interaction = await asyncio.wait_for(interactions.get(), WAIT)
        await interaction.edit_original_response(content="still working")  # token still valid

        fake.expire_token(handle.token)
        with pytest.raises(discord.HTTPException) as info:
            await interaction.edit_original_response(content="too late")
        assert info.value.status == 401 and info.value.code == 50027

        # The bot token still works: fall back to channel routes.
        channel = client.get_channel(fake.channel_id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("finished", allowed_mentions=discord.AllowedMentions.none())
        await message.edit(content="finished ✅")
        fetched = await channel.fetch_message(message.id)
        assert fetched.content == "finished ✅" and fetched.author.id == fake.application_id

        fake.delete_message(message.id)
        with pytest.raises(discord.NotFound) as gone:
            await message.edit(content="edited after delete")
        assert gone.value.code == 10008

    original = await handle.original_message(WAIT)
    assert original.content == "still working" and len(original.edits) == 1
    stored = fake.messages[message.id]
    assert stored.allowed_mentions == {"parse": []}  # AllowedMentions.none(), exactly as sent
    assert [e.changes["content"] for e in stored.edits] == ["finished ✅"]


async def test_rate_limited_channel_route_is_retried(fake: FakeDiscord) -> None:
    client = Bot()
    fault = fake.faults.add(
        method="POST", route=ROUTE_CHANNEL_MESSAGES, status=429, retry_after=0.05, count=1
    )
    async with running(client, fake, sync_guild=False):
        channel = client.get_channel(fake.channel_id)
        assert isinstance(channel, discord.TextChannel)
        started = time.monotonic()
        message = await channel.send("hello")
        elapsed = time.monotonic() - started

    assert fault.hits == 1 and elapsed >= 0.05
    posts = [r for r in fake.requests if r.route == ROUTE_CHANNEL_MESSAGES]
    assert [r.status for r in posts] == [429, 200]
    assert posts[0].response_json == {
        "message": "You are being rate limited.",
        "retry_after": 0.05,
        "global": False,
    }
    assert fake.messages[message.id].content == "hello"


async def test_channel_message_limiter_headers_make_discord_py_wait(fake: FakeDiscord) -> None:
    now = [0.0]
    fake.clock = lambda: now[0]
    fake.channel_message_limit = (2, 0.05)
    client = Bot()
    async with running(client, fake, sync_guild=False):
        channel = client.get_channel(fake.channel_id)
        assert isinstance(channel, discord.TextChannel)
        first = await channel.send("1")
        await first.edit(content="1b")  # shares the per-channel bucket; remaining hits 0
        assert fake.requests[-1].status == 200
        assert fake.requests[-1].response_json["content"] == "1b"
        now[0] += 1.0  # the window has passed by the fake's clock when discord.py retries
        await channel.send("2")

    statuses = [r.status for r in fake.requests if r.route in (ROUTE_CHANNEL_MESSAGES, ROUTE_CHANNEL_MESSAGE)]
    # discord.py read X-RateLimit-Remaining: 0 and slept Reset-After instead of hitting a 429.
    assert statuses == [200, 200, 200] and fake.rate_limited_count == 0


async def test_gateway_resume_after_disconnect(fake: FakeDiscord) -> None:
    client = Bot()

    @client.tree.command(description="Check the bot is alive")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        resumed = asyncio.create_task(client.wait_for("resumed", timeout=WAIT))
        await fake.disconnect_clients(4000)
        # Dispatched while the client is away: replayed from the session buffer on RESUME.
        handle = await fake.invoke_command("ping")
        await resumed
        assert (await handle.original_message(WAIT)).content == "pong"
        resume = await fake.wait_for_gateway_payload(lambda p: p["op"] == 6, WAIT)

    assert fake.identify_count == 1 and fake.resume_count == 1
    assert resume["d"]["token"] == "fake-token" and resume["d"]["seq"] >= 2


async def test_members_intent_chunks_over_the_gateway(fake: FakeDiscord) -> None:
    bob = fake.add_member(name="bob", roles=[int(fake.add_role("Creators", Permission.ATTACH_FILES)["id"])])
    intents = discord.Intents.default()
    intents.members = True  # privileged: chunk_guilds_at_startup defaults to True with it
    client = Bot(intents=intents)
    async with running(client, fake, sync_guild=False):
        guild = client.get_guild(fake.guild_id)
        assert guild is not None and guild.chunked
        member = guild.get_member(int(bob["user"]["id"]))
        assert member is not None and [r.name for r in member.roles[1:]] == ["Creators"]
    assert any(p["op"] == 8 for p in fake.gateway_received)


async def test_component_update_and_deferred_update_edit_the_source_message(fake: FakeDiscord) -> None:
    client = Bot()

    class Picker(discord.ui.View):
        @discord.ui.select(
            custom_id="pick:model", options=[discord.SelectOption(label=m) for m in ("fast", "hq")]
        )
        async def pick(self, interaction: discord.Interaction, select: discord.ui.Select[Picker]) -> None:
            await interaction.response.edit_message(content=f"model: {select.values[0]}", view=None)

        @discord.ui.button(label="Refresh", custom_id="pick:refresh")
        async def refresh(self, interaction: discord.Interaction, button: discord.ui.Button[Picker]) -> None:
            await interaction.response.defer()  # type 6: no new message
            await interaction.edit_original_response(content="refreshed")

    @client.tree.command(description="Choose a model")
    async def model(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("choose", view=Picker())

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        menu = await (await fake.invoke_command("model")).original_message(WAIT)

        refresh = await fake.invoke_component(menu, "pick:refresh")
        assert (await refresh.wait_response(WAIT)).json == {"type": 6}
        await refresh.original_message(WAIT, predicate=lambda m: m.content == "refreshed")

        pick = await fake.invoke_component(menu, "pick:model", values=["hq"])
        assert (await pick.wait_response(WAIT)).json["type"] == 7
        await pick.original_message(WAIT, predicate=lambda m: m.content == "model: hq")

    assert menu.components == [] and len(menu.edits) == 2
    with pytest.raises(LookupError):  # the view was removed, so there is nothing left to click
        await fake.invoke_component(menu, "pick:refresh")


async def test_interaction_error_semantics(fake: FakeDiscord) -> None:
    """The Discord errors a video bot must handle: oversized upload, late first response."""
    client = Bot()
    errors: asyncio.Queue[discord.HTTPException] = asyncio.Queue()

    @client.tree.command(description="Upload something too big")
    async def upload(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        too_big = io.BytesIO(b"\0" * (interaction.filesize_limit + 1))
        try:
            await interaction.followup.send(file=discord.File(too_big, "huge.mp4"))
        except discord.HTTPException as exc:
            await errors.put(exc)
            await interaction.followup.send("That video is too large for Discord.")

    @client.tree.command(description="Answer too late")
    async def late(interaction: discord.Interaction) -> None:
        fake.clock = lambda: time.monotonic() + 4.0  # past Discord's 3 s window, without sleeping
        try:
            await interaction.response.send_message("hello?")
        except discord.HTTPException as exc:
            await errors.put(exc)

    client.tree.copy_global_to(guild=discord.Object(fake.guild_id))
    async with running(client, fake):
        handle = await fake.invoke_command("upload")
        too_large = await asyncio.wait_for(errors.get(), WAIT)
        assert (too_large.status, too_large.code) == (413, 40005)
        await handle.original_message(WAIT, predicate=lambda m: m.content.startswith("That video"))

        await fake.invoke_command("late")
        expired = await asyncio.wait_for(errors.get(), WAIT)
        assert isinstance(expired, discord.NotFound) and expired.code == 10062


async def test_privileged_intents_can_be_refused(fake: FakeDiscord) -> None:
    fake.privileged_intents = 0  # as if the toggles in the developer portal were off
    intents = discord.Intents.default()
    intents.message_content = True
    client = Bot(intents=intents)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await asyncio.wait_for(client.start(fake.token), WAIT)
    await client.close()


async def test_unknown_routes_are_recorded(fake: FakeDiscord) -> None:
    client = Bot()
    async with running(client, fake, sync_guild=False):
        guild = client.get_guild(fake.guild_id)
        assert guild is not None
        with pytest.raises(discord.NotFound):
            await guild.fetch_emojis()
    [unknown] = fake.unhandled_requests
    assert unknown.method == "GET" and unknown.path == f"/guilds/{fake.guild_id}/emojis"
    assert unknown.response_json == {"message": "404: Not Found", "code": 0}


async def test_close_is_prompt(fake: FakeDiscord) -> None:
    client = Bot()
    task = asyncio.create_task(client.start(fake.token))
    await wait_ready(client, task)
    await fake.wait_connected(WAIT)

    started = time.monotonic()
    await asyncio.wait_for(client.close(), WAIT)
    await asyncio.wait_for(task, WAIT)
    assert time.monotonic() - started < 2.0
    assert client.is_closed()
    await fake.wait_disconnected(WAIT)  # the fake saw the websocket go away


async def test_fake_world_helpers_shape(fake: FakeDiscord) -> None:
    """Sanity checks of the non-network helpers other tests rely on."""
    role = fake.add_role("Video Admin", Permission.MANAGE_GUILD)
    member = fake.add_member(name="carol", roles=[int(role["id"])], permissions=Permission.ALL)
    private = fake.add_channel(
        "staff",
        permission_overwrites=[{"id": fake.guild_id, "type": 0, "deny": Permission.VIEW_CHANNEL}],
    )
    uid = int(member["user"]["id"])
    assert fake.permissions_in(int(private["id"]), uid) == 0
    assert fake.permissions_in(fake.channel_id, int(fake.owner_user["id"])) == Permission.ALL
    attachment = fake.add_attachment(b"data", "clip.mp4")
    assert attachment["content_type"] == "video/mp4" and attachment["size"] == 4
    ids = [fake.snowflake() for _ in range(3)]
    assert ids == sorted(set(ids)) and ids[0] > 1 << 40
    assert isinstance(fake.messages, dict) and all(
        isinstance(m, StoredMessage) for m in fake.messages.values()
    )
