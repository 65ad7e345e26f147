"""What tests call to act as members: run slash commands, autocomplete, press buttons and submit
modals. Each builds the payload Discord would send and dispatches INTERACTION_CREATE."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fakes.discord.rest import ROUTE_CALLBACK
from tests.fakes.discord.world import (
    _ITYPE_APPLICATION_COMMAND,
    _ITYPE_AUTOCOMPLETE,
    _ITYPE_COMPONENT,
    _ITYPE_MODAL_SUBMIT,
    Permission,
    RecordedRequest,
    StoredMessage,
    World,
    _Interaction,
)

if TYPE_CHECKING:
    from tests.fakes.discord import FakeDiscord


@dataclass
class InteractionHandle:
    """What ``invoke_command`` & co. return: the interaction as dispatched, plus waiters."""

    fake: FakeDiscord
    id: int
    token: str
    type: int
    payload: dict[str, Any]

    @property
    def _state(self) -> _Interaction:
        return self.fake._interactions[self.id]

    @property
    def callback_type(self) -> int | None:
        return self._state.callback_type

    @property
    def followups(self) -> list[StoredMessage]:
        """Followup messages created so far (not counting one that completed a deferred @original)."""
        return [self.fake.messages[mid] for mid in self._state.followup_ids]

    def requests(self) -> list[RecordedRequest]:
        """Every callback / webhook request made for this interaction so far."""
        return [
            r
            for r in self.fake.requests
            if r.params.get("webhook_token") == self.token
            or (r.route == ROUTE_CALLBACK and r.params.get("webhook_id") == str(self.id))
        ]

    async def wait_response(self, timeout: float = 10.0) -> RecordedRequest:  # noqa: ASYNC109
        """The first ``POST /interactions/{id}/{token}/callback`` (whatever it answered)."""
        return await self.fake.wait_for_request(
            lambda r: r.route == ROUTE_CALLBACK and r.params.get("webhook_id") == str(self.id),
            timeout=timeout,
        )

    async def original_message(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        predicate: Callable[[StoredMessage], bool] | None = None,
    ) -> StoredMessage:
        """The @original message (created by a type 4/5 callback, or the component's message
        for 6/7), optionally waiting until ``predicate`` holds for it (e.g. after an edit)."""

        def find() -> StoredMessage | None:
            mid = self._state.original_message_id
            msg = self.fake.messages.get(mid) if mid is not None else None
            if msg is None or (predicate is not None and not predicate(msg)):
                return None
            return msg

        return await self.fake._wait(find, timeout, f"@original of interaction {self.id}")

    async def wait_followup(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        predicate: Callable[[StoredMessage], bool] | None = None,
    ) -> StoredMessage:
        """The first followup message (``POST /webhooks/{app}/{token}``) matching ``predicate``."""

        def find() -> StoredMessage | None:
            for mid in self._state.followup_ids:
                msg = self.fake.messages[mid]
                if predicate is None or predicate(msg):
                    return msg
            return None

        return await self.fake._wait(find, timeout, f"a followup of interaction {self.id}")

    async def choices(self, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The autocomplete choices the bot answered with (callback type 8)."""
        return await self.fake._wait(
            lambda: self._state.choices, timeout, f"autocomplete result of {self.id}"
        )

    async def modal(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The modal the bot opened (callback type 9 ``data``: custom_id, title, components)."""
        return await self.fake._wait(lambda: self._state.modal, timeout, f"modal of {self.id}")


class Driver(World):
    """The member side of ``FakeDiscord``: simulated slash commands, buttons and forms."""

    # ----------------------------------------------------------------------------- interactions: user side

    def _resolve_user(self, user: int | Mapping[str, Any] | None) -> dict[str, Any]:
        if user is None:
            return self.default_user
        if isinstance(user, Mapping):
            user = int((user.get("user") or user)["id"])
        if user not in self.users:
            raise KeyError(f"FakeDiscord has no user {user}; add_user()/add_member() first")
        return self.users[user]

    def _interaction_channel(self, channel_id: int, user_id: int) -> dict[str, Any]:
        channel = dict(self.channels[channel_id])
        channel["permissions"] = str(self.permissions_in(channel_id, user_id))
        return channel

    def _dm_channel_for(self, user_id: int) -> int:
        cid = self._dm_channels.get(user_id)
        if cid is None:
            cid = self.snowflake()
            self._dm_channels[user_id] = cid
            self.channels[cid] = {
                "id": str(cid),
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.users[user_id]],
            }
        return cid

    async def _create_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        user: dict[str, Any],
        guild_id: int | None,
        channel_id: int,
        locale: str,
        name: str = "",
        message: StoredMessage | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> InteractionHandle:
        if not self._sessions and self.interaction_sink is None:
            raise RuntimeError("FakeDiscord: no gateway session to deliver the interaction to")
        iid = self.snowflake(age=self.interaction_age_seconds)
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)  # shaped like Discord's base64 tokens
        uid = int(user["id"])
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(channel_id),
            "channel": self._interaction_channel(channel_id, uid),
            "token": token,
            "version": 1,
            "app_permissions": str(self.permissions_in(channel_id, self.application_id)),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            # Discord sends this (discord.py 2.7 requires it: Interaction.filesize_limit).
            "attachment_size_limit": self.attachment_size_limit,
        }
        if guild_id is not None:
            guild = self.guilds[guild_id]
            member = self.member(uid, guild_id)
            if member is None:
                raise KeyError(f"user {uid} is not a member of guild {guild_id}; add_member() first")
            perms = self._member_permissions.get((guild_id, uid), self.permissions_in(channel_id, uid))
            payload.update(
                guild_id=str(guild_id),
                guild={
                    "id": str(guild_id),
                    "locale": guild["preferred_locale"],
                    "features": guild["features"],
                },
                guild_locale=guild["preferred_locale"],
                member={**member, "permissions": str(perms)},
                authorizing_integration_owners={"0": str(guild_id)},
                context=0,
            )
        else:
            payload.update(user=user, authorizing_integration_owners={"0": str(guild_id or 0)}, context=1)
        if message is not None:
            payload["message"] = message.to_payload()
        payload.update(extra or {})
        interaction = _Interaction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            created_at=self.clock() - self.interaction_age_seconds,
            age=self.interaction_age_seconds,
            guild_id=guild_id,
            channel_id=channel_id,
            user=user,
            name=name,
            source_message_id=message.id if message is not None else None,
        )
        self._interactions[iid] = interaction
        self._interactions_by_token[token] = interaction
        if self.interaction_sink is not None:
            self.interaction_sink(payload)
        else:
            await self.dispatch("INTERACTION_CREATE", payload)
        return InteractionHandle(self, iid, token, itype, payload)

    def _scope(
        self, user: dict[str, Any], guild_id: int | None, channel_id: int | None, dm: bool
    ) -> tuple[int | None, int]:
        if dm:
            return None, channel_id or self._dm_channel_for(int(user["id"]))
        if channel_id is not None:
            channel = self.channels[channel_id]
            gid = channel.get("guild_id")
            return (int(gid) if gid is not None else None), channel_id
        guild = self._guild(guild_id)
        return int(guild["id"]), int(guild["system_channel_id"])

    def _find_command(self, name: str, guild_id: int | None, ctype: int) -> dict[str, Any]:
        command = (
            self.get_command(name, guild_id, type=ctype) if guild_id is not None else None
        ) or self.get_command(name, None, type=ctype)
        if command is None:
            raise LookupError(
                f"command {name!r} (type {ctype}) is not registered — did the bot sync its tree?"
            )
        return command

    def _option_payload(
        self,
        definition: Mapping[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        *,
        focused: bool,
    ) -> dict[str, Any]:
        otype = definition["type"]
        name = definition["name"]
        option: dict[str, Any] = {"type": otype, "name": name}
        if focused:
            option.update(value=str(value), focused=True)  # the partial text the user typed
            return option
        if otype in (3, 4, 10, 5):
            if otype == 4 and (isinstance(value, bool) or int(value) != value):
                raise ValueError(f"option {name!r} expects an integer, got {value!r}")
            value = {3: str, 4: int, 10: float, 5: bool}[otype](value)
            choices = definition.get("choices")
            if choices and value not in [c["value"] for c in choices]:
                raise ValueError(f"option {name!r}: {value!r} is not one of its choices")
            lo, hi = definition.get("min_value"), definition.get("max_value")
            if otype in (4, 10) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
                raise ValueError(f"option {name!r}: {value!r} is outside [{lo}, {hi}]")
            lo, hi = definition.get("min_length"), definition.get("max_length")
            if otype == 3 and ((lo is not None and len(value) < lo) or (hi is not None and len(value) > hi)):
                raise ValueError(f"option {name!r}: length of {value!r} is outside [{lo}, {hi}]")
            option["value"] = value
            return option
        snowflake = int((value.get("user") or value)["id"]) if isinstance(value, Mapping) else int(value)
        option["value"] = str(snowflake)
        if otype == 9:  # MENTIONABLE: a user or a role
            otype = 6 if snowflake in self.users else 8
        if otype == 6:
            user = self.users[snowflake]
            resolved.setdefault("users", {})[str(snowflake)] = user
            member = self.member(snowflake, guild_id) if guild_id is not None else None
            if member is not None:
                resolved.setdefault("members", {})[str(snowflake)] = {
                    **{k: v for k, v in member.items() if k != "user"},
                    "permissions": str(self._base_permissions(self.guilds[guild_id], snowflake)),  # type: ignore[index]
                }
        elif otype == 7:
            channel = self.channels[snowflake]
            types = definition.get("channel_types")
            if types and channel["type"] not in types:
                raise ValueError(f"option {name!r}: channel type {channel['type']} not in {types}")
            resolved.setdefault("channels", {})[str(snowflake)] = {
                k: channel[k] for k in ("id", "name", "type", "parent_id", "guild_id") if k in channel
            } | {"permissions": str(self.permissions_in(snowflake, self.application_id))}
        elif otype == 8:
            guild = self._guild(guild_id)
            role = next((r for r in guild["roles"] if r["id"] == str(snowflake)), None)
            if role is None:
                raise KeyError(f"no role {snowflake} in guild {guild['id']}")
            resolved.setdefault("roles", {})[str(snowflake)] = role
        elif otype == 11:
            if isinstance(value, Mapping):
                attachment = dict(value)
            else:
                attachment = self.attachments[snowflake].to_payload()
            resolved.setdefault("attachments", {})[str(snowflake)] = attachment
        return option

    def _build_options(
        self,
        definitions: Sequence[Mapping[str, Any]],
        path: Sequence[str],
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        focused: str | None,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in definitions}
        if path:
            sub = by_name.get(path[0])
            if sub is None or sub["type"] not in (1, 2):
                raise LookupError(f"no subcommand or group {path[0]!r}; have {sorted(by_name)}")
            inner = self._build_options(
                sub.get("options") or [], path[1:], values, resolved, guild_id, focused
            )
            return [{"type": sub["type"], "name": sub["name"], "options": inner}]
        if any(d["type"] in (1, 2) for d in definitions):
            raise LookupError(f"a subcommand is required; choose from {sorted(by_name)}")
        options = []
        for key, value in values.items():
            if key not in by_name:
                raise KeyError(f"unknown option {key!r}; command has {sorted(by_name)}")
            options.append(
                self._option_payload(by_name[key], value, resolved, guild_id, focused=key == focused)
            )
        if focused is None:
            missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in values]
            if missing:
                raise ValueError(f"missing required options {missing}")
        return options

    async def _command_interaction(
        self,
        itype: int,
        name: str,
        options: Mapping[str, Any] | None,
        *,
        user: int | Mapping[str, Any] | None,
        guild_id: int | None,
        channel_id: int | None,
        dm: bool,
        locale: str,
        focused: str | None,
        ignore_default_permissions: bool,
    ) -> InteractionHandle:
        user_payload = self._resolve_user(user)
        gid, cid = self._scope(user_payload, guild_id, channel_id, dm)
        top, *path = name.split()
        command = self._find_command(top, gid, 1)
        required = command.get("default_member_permissions")
        if gid is not None and required is not None and not ignore_default_permissions:
            uid = int(user_payload["id"])
            have = self._member_permissions.get((gid, uid), self._base_permissions(self.guilds[gid], uid))
            if not have & Permission.ADMINISTRATOR and have & int(required) != int(required):
                raise PermissionError(
                    f"user lacks default_member_permissions={required} for /{top}; Discord hides it"
                )
        resolved: dict[str, dict[str, Any]] = {}
        built = self._build_options(
            command.get("options") or [], path, dict(options or {}), resolved, gid, focused
        )
        data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._create_interaction(
            itype, data, user=user_payload, guild_id=gid, channel_id=cid, locale=locale, name=name
        )

    async def invoke_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: int | Mapping[str, Any] | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        attachments: Mapping[str, Mapping[str, Any] | tuple[bytes, str, str]] | None = None,
        dm: bool = False,
        locale: str = "en-US",
        ignore_default_permissions: bool = False,
    ) -> InteractionHandle:
        """A user runs ``/name`` (``"group sub"`` for subcommands): dispatches INTERACTION_CREATE
        type 2 built from the *registered* command (so option types come from what the bot
        synced). Values: str/int/float/bool; user/member/role/channel ids or payload dicts;
        attachment payloads from ``add_attachment`` (or ``attachments={"opt": (bytes, filename,
        content_type)}``). Defaults: ``fake.default_user`` in the default guild's #general."""
        values = dict(options or {})
        for key, att in (attachments or {}).items():
            values[key] = self.add_attachment(*att) if isinstance(att, tuple) else att
        return await self._command_interaction(
            _ITYPE_APPLICATION_COMMAND,
            name,
            values,
            user=user,
            guild_id=guild_id,
            channel_id=channel_id,
            dm=dm,
            locale=locale,
            focused=None,
            ignore_default_permissions=ignore_default_permissions,
        )

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str | None = None,
        user: int | Mapping[str, Any] | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Type 4: the user is typing into option ``focused`` (default: the last in ``options``).
        ``await handle.choices()`` returns what the bot answered."""
        focus = focused if focused is not None else list(options)[-1]
        return await self._command_interaction(
            _ITYPE_AUTOCOMPLETE,
            name,
            options,
            user=user,
            guild_id=guild_id,
            channel_id=channel_id,
            dm=dm,
            locale=locale,
            focused=focus,
            ignore_default_permissions=True,
        )

    @staticmethod
    def _walk_components(components: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for c in components:
            yield c
            yield from Driver._walk_components(c.get("components") or [])
            for key in ("accessory", "component"):
                if isinstance(c.get(key), Mapping):
                    yield from Driver._walk_components([c[key]])

    async def invoke_component(
        self,
        message: StoredMessage | int,
        custom_id: str,
        *,
        user: int | Mapping[str, Any] | None = None,
        component_type: int | None = None,
        values: Sequence[str | int] | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user clicks a button / picks from a select on a stored message (type 3)."""
        msg = self.messages[message] if isinstance(message, int) else message
        if msg.deleted:
            raise LookupError(f"message {msg.id} was deleted")
        component = next(
            (c for c in self._walk_components(msg.components) if c.get("custom_id") == custom_id), None
        )
        if component is None:
            raise LookupError(f"message {msg.id} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise PermissionError(f"component {custom_id!r} is disabled; Discord would not send the click")
        ctype = component_type if component_type is not None else int(component["type"])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype, "id": component.get("id")}
        if ctype in (3, 5, 6, 7, 8):
            picked = [str(v) for v in values or []]
            data["values"] = picked
            resolved: dict[str, dict[str, Any]] = {}
            kind = {5: 6, 6: 8, 7: 9, 8: 7}.get(ctype)
            if kind is not None:
                for v in picked:
                    self._option_payload(
                        {"type": kind, "name": custom_id}, v, resolved, msg.guild_id, focused=False
                    )
                data["resolved"] = resolved
        user_payload = self._resolve_user(user)
        return await self._create_interaction(
            _ITYPE_COMPONENT,
            data,
            user=user_payload,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            locale=locale,
            message=msg,
        )

    def _fill_modal(
        self, components: Sequence[Mapping[str, Any]], fields: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Answer a modal the way Discord does: the same layout with values filled in."""
        out = []

        def leaf(c: Mapping[str, Any], label: str | None) -> dict[str, Any]:
            ctype, cid = c["type"], c.get("custom_id")
            result: dict[str, Any] = {"type": ctype, "id": c.get("id")}
            if cid is None:
                return result
            result["custom_id"] = cid
            key = next((k for k in (cid, label, c.get("label")) if k is not None and k in fields), None)
            value = fields.pop(key) if key is not None else None
            if ctype == 4:
                if value is None and c.get("required", True):
                    raise ValueError(f"modal text input {label or c.get('label') or cid!r} is required")
                result["value"] = "" if value is None else str(value)
            else:
                result["values"] = [str(v) for v in (value or [])]
            return result

        for c in components:
            if c["type"] == 1:
                out.append(
                    {
                        "type": 1,
                        "id": c.get("id"),
                        "components": [leaf(x, x.get("label")) for x in c["components"]],
                    }
                )
            elif c["type"] == 18:
                out.append({"type": 18, "id": c.get("id"), "component": leaf(c["component"], c.get("label"))})
            else:
                out.append({"type": c["type"], "id": c.get("id")})
        return out

    async def submit_modal(
        self,
        custom_id: str,
        fields: Mapping[str, str | Sequence[str]],
        *,
        user: int | Mapping[str, Any] | None = None,
        message: StoredMessage | int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user submits the modal the bot opened with ``custom_id`` (type 5). ``fields`` keys are
        the inputs' custom_ids or labels. User/channel/message default to the opening interaction's."""
        opener = next(
            (
                i
                for i in reversed(self._interactions.values())
                if i.modal and i.modal["custom_id"] == custom_id
            ),
            None,
        )
        remaining = dict(fields)
        if opener is not None:
            components = self._fill_modal(opener.modal["components"], remaining)  # type: ignore[index]
            if remaining:
                raise KeyError(f"modal {custom_id!r} has no inputs {sorted(remaining)}")
            user_payload = self._resolve_user(user) if user is not None else opener.user
            gid, cid = opener.guild_id, opener.channel_id
            if message is None and opener.source_message_id is not None:
                message = opener.source_message_id
        else:
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": str(v)}]}
                for k, v in remaining.items()
            ]
            user_payload = self._resolve_user(user)
            gid, cid = self._scope(user_payload, None, None, dm=False)
        msg = self.messages[message] if isinstance(message, int) else message
        if msg is not None:
            gid, cid = msg.guild_id, msg.channel_id
        return await self._create_interaction(
            _ITYPE_MODAL_SUBMIT,
            {"custom_id": custom_id, "components": components},
            user=user_payload,
            guild_id=gid,
            channel_id=cid,
            locale=locale,
            message=msg,
        )
