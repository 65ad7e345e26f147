"""The Videos API's wire format as the local renderer speaks it: OpenAI-style errors, request bodies
(JSON or multipart) and the validation of every parameter."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web
from multidict import MultiDictProxy
from PIL import Image

from bot.adapters.media import ImageError, sniff_image
from bot.localapi.config import LocalRendererConfig

API_PREFIX: Final = "/v1"
POLL_AFTER_HEADER: Final = "openai-poll-after-ms"
MAX_PROMPT_CHARS: Final = 32_000

DEFAULT_MODEL: Final = "sora-2"
DEFAULT_SIZE: Final = "720x1280"
DEFAULT_SECONDS: Final = "4"
CREATE_FIELDS: Final = frozenset({"model", "prompt", "input_reference", "seconds", "size"})
REMIX_FIELDS: Final = frozenset({"prompt"})
EXTEND_FIELDS: Final = frozenset({"video", "prompt", "seconds"})
EDIT_FIELDS: Final = frozenset({"video", "prompt"})
CHARACTER_FIELDS: Final = frozenset({"video", "name"})
MAX_CHARACTER_NAME_CHARS: Final = 80
# Multipart parts whose bytes are kept as bytes (uploads); other text parts are decoded.
_BINARY_FIELDS: Final = frozenset({"input_reference", "video"})
# ``video[id]``: how SDKs send an object field in a multipart body.
_NESTED_FIELD: Final = re.compile(r"([A-Za-z_]+)\[([A-Za-z_]+)\]")

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered with an OpenAI-style body: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.retry_after = retry_after
        """Seconds, sent as ``Retry-After`` (whole seconds) and ``retry-after-ms``."""

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        all_headers = dict(headers or {})
        if self.retry_after is not None:
            all_headers.setdefault("Retry-After", str(max(1, math.ceil(self.retry_after))))
            all_headers.setdefault("retry-after-ms", str(round(self.retry_after * 1000)))
        body = {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }
        return web.json_response(body, status=self.status, headers=all_headers)


def invalid(param: str, message: str, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def quoted(values: Iterable[str]) -> str:
    items = [f"'{value}'" for value in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def not_found(video_id: str) -> ApiError:
    return ApiError(404, f"Video with id '{video_id}' not found.")


# --------------------------------------------------------------------------- request bodies


@dataclass(frozen=True)
class RequestBody:
    """A request body parsed once, shared by the handlers and any extension middleware."""

    json: Any = None
    """The parsed JSON document for ``application/json`` bodies, else ``None``."""
    form: MultiDictProxy[str | bytes | bytearray | web.FileField] | None = None
    """Multipart fields for ``multipart/form-data`` bodies, else ``None``."""
    error: ApiError | None = None
    """Why the body is unusable; raised by handlers that need a body."""


_BODY_KEY: Final = web.RequestKey("parsed_body", RequestBody)


async def request_body(request: web.Request) -> RequestBody:
    """The request's parsed body, read at most once per request.

    Raises what aiohttp raises for a body that cannot be read at all (too large, client gone).
    """
    body = request.get(_BODY_KEY)
    if body is None:
        body = await _parse_body(request)
        request[_BODY_KEY] = body
    return body


async def _parse_body(request: web.Request) -> RequestBody:
    if not request.body_exists:
        return RequestBody()
    if request.content_type == "multipart/form-data":
        try:
            return RequestBody(form=await request.post())
        except ValueError as exc:
            return RequestBody(error=ApiError(400, f"Could not parse the multipart/form-data body: {exc}"))
    raw = await request.read()
    if request.content_type != "application/json":
        return RequestBody(
            error=ApiError(
                400,
                f"Unsupported Content-Type '{request.content_type}'; send application/json or multipart/form-data.",
            )
        )
    try:
        return RequestBody(json=json.loads(raw))
    except ValueError:
        return RequestBody(
            error=ApiError(
                400,
                "We could not parse the JSON body of your request. The body must be valid JSON.",
            )
        )


async def fields(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's parameters, from a JSON object or multipart fields; file parts become bytes."""
    body = await request_body(request)
    if body.error is not None:
        raise body.error
    if body.form is not None:
        values: dict[str, Any] = {}
        for name, value in body.form.items():
            if isinstance(value, web.FileField):
                item: Any = value.file.read()
            elif isinstance(value, bytearray | bytes):
                item = bytes(value) if name in _BINARY_FIELDS else value.decode(errors="replace")
            else:
                item = value
            nested = _NESTED_FIELD.fullmatch(name)
            if nested is None:
                values[name] = item
            elif isinstance(values.setdefault(nested[1], {}), dict):
                values[nested[1]][nested[2]] = (
                    item.decode(errors="replace") if isinstance(item, bytes) else item
                )
    elif body.json is None:
        values = {}
    elif isinstance(body.json, dict):
        values = body.json
    else:
        raise ApiError(400, "The request body must be a JSON object.")
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise invalid(
            unknown[0], f"Unrecognized request argument supplied: {unknown[0]}", code="unknown_parameter"
        )
    return values


# --------------------------------------------------------------------------- validation


def query_limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(
            "limit", f"Invalid 'limit': expected an integer, got '{raw}'.", code="invalid_type"
        ) from None
    if not 0 <= limit <= 100:
        raise invalid("limit", f"Invalid 'limit': {limit} is outside 0..100.")
    return limit


def validated_prompt(value: object) -> str:
    if value is None:
        raise invalid("prompt", "Missing required parameter: 'prompt'.", code="missing_required_parameter")
    if not isinstance(value, str):
        raise invalid("prompt", "Invalid type for 'prompt': expected a string.", code="invalid_type")
    if not value:
        raise invalid("prompt", "Invalid 'prompt': empty string. Expected a string with minimum length 1.")
    if len(value) > MAX_PROMPT_CHARS:
        raise invalid(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT_CHARS}, "
            f"but got a string with length {len(value)} instead.",
            code="string_above_max_length",
        )
    return value


def validated_model(config: LocalRendererConfig, value: object) -> str:
    if not isinstance(value, str) or value not in config.models:
        raise invalid("model", f"Invalid value: '{value}'. Supported values are: {quoted(config.models)}.")
    return value


def validated_size(config: LocalRendererConfig, model: str, value: object) -> str:
    sizes = config.models[model]
    if not isinstance(value, str) or value not in sizes:
        raise invalid("size", f"Invalid value: '{value}'. Supported sizes for {model} are: {quoted(sizes)}.")
    return value


def validated_seconds(config: LocalRendererConfig, value: object, *, extension: bool = False) -> str:
    """A create's length (the contract's enum), or with ``extension`` an extension segment's (the
    contract's extension list, 4 to 20)."""
    allowed = config.extension_seconds if extension else config.allowed_seconds
    if not isinstance(value, str):
        raise invalid(
            "seconds",
            f"Invalid type for 'seconds': expected one of {quoted(allowed)} as a string.",
            code="invalid_type",
        )
    if value not in allowed:
        what = "extension lengths" if extension else "values"
        raise invalid("seconds", f"Invalid value: '{value}'. Supported {what} are: {quoted(allowed)}.")
    return value


async def validated_reference(value: object, size: str) -> bytes:
    """Return the reference image's bytes after checking it is a usable image of exactly ``size``."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, dict) and isinstance(value.get("image_url"), str):
        data = _decode_data_url(value["image_url"])
    elif isinstance(value, dict) and "file_id" in value:
        raise invalid("input_reference", "The local renderer has no file storage; upload the image instead.")
    else:
        raise invalid(
            "input_reference",
            "input_reference must be an uploaded image file or an object with a base64 data: image_url.",
        )
    try:
        actual_size = await asyncio.to_thread(_image_size, data)
    except ImageError as error:
        raise invalid("input_reference", error.user_message) from None
    if f"{actual_size[0]}x{actual_size[1]}" != size:
        raise invalid("input_reference", "Inpaint image must match the requested width and height")
    return data


def _image_size(data: bytes) -> tuple[int, int]:
    sniff_image(data)
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _decode_data_url(url: str) -> bytes:
    header, comma, encoded = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise invalid(
            "input_reference",
            "The local renderer cannot fetch URLs; send image_url as a base64 data: URL or upload the file.",
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise invalid("input_reference", "input_reference.image_url is not valid base64.") from None


def validated_video(value: object) -> str | bytes:
    """The ``video`` of an extension or edit: a completed video's id (``{"id": ...}``) or an upload."""
    if value is None:
        raise invalid("video", "Missing required parameter: 'video'.", code="missing_required_parameter")
    if isinstance(value, bytes):
        if not value:
            raise invalid("video", "The uploaded video is empty.")
        return value
    if isinstance(value, str):
        # A JSON object sent as a multipart text part.
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, dict) and set(value) == {"id"} and isinstance(value["id"], str) and value["id"]:
        return value["id"]
    raise invalid(
        "video",
        "Invalid 'video': expected an object with the 'id' of a completed video, or an uploaded video file.",
        code="invalid_type",
    )


def validated_upload(value: object, param: str) -> bytes:
    if value is None:
        raise invalid(param, f"Missing required parameter: '{param}'.", code="missing_required_parameter")
    if not isinstance(value, bytes) or not value:
        raise invalid(param, f"Invalid '{param}': expected an uploaded video file.", code="invalid_type")
    return value


def validated_name(value: object) -> str:
    if value is None:
        raise invalid("name", "Missing required parameter: 'name'.", code="missing_required_parameter")
    if not isinstance(value, str):
        raise invalid("name", "Invalid type for 'name': expected a string.", code="invalid_type")
    if not 1 <= len(value) <= MAX_CHARACTER_NAME_CHARS:
        raise invalid(
            "name",
            f"Invalid 'name': expected a string of 1 to {MAX_CHARACTER_NAME_CHARS} characters, "
            f"got {len(value)}.",
        )
    return value


def nearest_size(sizes: Iterable[str], width: int, height: int) -> str:
    """The size in ``sizes`` closest in shape, then in area, to ``width`` x ``height``."""

    def distance(size: str) -> tuple[float, float]:
        w, h = (int(part) for part in size.split("x"))
        return abs(math.log((w / h) / (width / height))), abs(math.log((w * h) / (width * height)))

    return min(sizes, key=distance)
