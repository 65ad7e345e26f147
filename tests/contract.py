"""Contract checks against the OpenAI Videos API spec (``tests/contracts/openai-videos-openapi.yaml``).

``validate_request`` checks what a client sends; ``validate_response`` checks what a server returns.
Both raise ``ContractViolation`` (an ``AssertionError``) describing every mismatch.

What is checked, and how:

* JSON requests and 200 JSON responses go through openapi-core (path, query parameters, bearer
  auth, body schema).
* ``multipart/form-data`` requests: openapi-core parses multipart bodies but hands file parts to
  the schema as ``bytes``, which its OpenAPI 3.1 validator never accepts as ``type: string,
  format: binary``. So for multipart, openapi-core checks parameters and security only, and the
  body is parsed here with the standard library's email parser: text parts become strings, file
  parts (those with a filename or a non-text content type) become a placeholder string, and the
  result is validated with jsonschema against the operation's multipart schema (e.g.
  ``CreateVideoMultipartBody``). Repeated field names are reported as violations.
* Error responses (any status but 200): the spec declares only 200 responses, so the body is
  validated with jsonschema against ``components/schemas/ErrorResponse``.
* Binary 200 responses (content downloads): the content type must be one the operation declares;
  the body must not be empty.
* Multipart fields named ``field[key]`` (how the SDKs send an object such as ``video: {id}``) are
  folded into an object before the body is validated.
* Extension segments: the spec's ``CreateVideoExtend*Body.seconds`` refers to the ``VideoSeconds``
  enum (4, 8, 12) while its own description allows 4, 8, 12, 16 and 20; an extension request with
  16 or 20 is accepted (the project's DECISIONS settle it that way).

The spec is a copy kept inside the repository (``tests/contracts/``, with its source and commit in
the README beside it), so the suite needs nothing outside the clone.
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.validators import (
    V31RequestParametersValidator,
    V31RequestSecurityValidator,
)

SPEC_PATH = Path(__file__).resolve().parent / "contracts" / "openai-videos-openapi.yaml"

# The spec's server is https://api.openai.com/v1; requests are re-addressed there so that
# openapi-core matches them whatever host and base path they were really sent to.
_SPEC_HOST = "https://api.openai.com"
_SPEC_BASE_PATH = "/v1"
_FILE_PLACEHOLDER = "<binary file>"
# The extension lengths the spec's description allows beyond its VideoSeconds enum.
_EXTENSION_ONLY_SECONDS = frozenset({"16", "20"})
_EXTENSIONS_PATH = _SPEC_BASE_PATH + "/videos/extensions"
_NESTED_FIELD = re.compile(r"([A-Za-z_]+)\[([A-Za-z_]+)\]")


class ContractViolation(AssertionError):
    """A request or response does not match the OpenAI Videos API spec."""


@functools.cache
def _openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


@functools.cache
def _spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as spec_file:
        spec: dict[str, Any] = yaml.safe_load(spec_file)
    return spec


def validate_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body_bytes: bytes | None,
    *,
    require_auth: bool = True,
) -> None:
    """Check a client request; ``url`` may be absolute or a path, with any base before ``/videos``.

    With ``require_auth=False`` a missing ``Authorization`` header is tolerated (self-hosted
    servers without keys); a present one must still be a bearer token.
    """
    path, query = _spec_address(url)
    header_map = _lower_keys(headers)
    if not require_auth:
        header_map.setdefault("authorization", "Bearer not-checked")
    content_type = header_map.get("content-type", "application/json")
    if path == _EXTENSIONS_PATH and content_type.startswith("application/json") and body_bytes:
        body_bytes = _as_enum_extension(body_bytes)
    request = MockRequest(
        _SPEC_HOST,
        method.lower(),
        path,
        args=query,
        headers=header_map,
        data=body_bytes,
        content_type=content_type,
    )
    where = f"{method.upper()} {path}"
    openapi = _openapi()
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        for validator in (
            V31RequestParametersValidator(openapi.spec),
            V31RequestSecurityValidator(openapi.spec),
        ):
            _raise_as_violation(where, functools.partial(validator.validate, request))
        _validate_multipart_body(where, method, path, content_type, body_bytes or b"")
    else:
        _raise_as_violation(where, lambda: openapi.validate_request(request))


def validate_response(
    method: str, path: str, status: int, headers: Mapping[str, str], body_bytes: bytes
) -> None:
    """Check a server response to ``method`` ``path`` (absolute URL or path, query included)."""
    spec_path, query = _spec_address(path)
    header_map = _lower_keys(headers)
    content_type = header_map.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    where = f"{method.upper()} {spec_path} -> {status}"
    if status != 200:
        if media_type != "application/json":
            raise ContractViolation(f"{where}: error body must be application/json, got {content_type!r}")
        _validate_schema(where, _json(where, body_bytes), "ErrorResponse")
        return
    if media_type != "application/json":
        _check_binary_response(where, method, spec_path, media_type, body_bytes)
        return
    request = MockRequest(
        _SPEC_HOST,
        method.lower(),
        spec_path,
        args=query,
        headers={"authorization": "Bearer not-checked"},
    )
    response = MockResponse(body_bytes, status_code=status, headers=header_map, content_type=media_type)
    _raise_as_violation(where, lambda: _openapi().validate_response(request, response))


def _spec_address(url: str) -> tuple[str, dict[str, str]]:
    """Map a URL to the spec's ``/v1/videos...`` path and its query parameters."""
    parts = urlsplit(url)
    start = parts.path.find("/videos")
    if start < 0:
        raise ContractViolation(f"{url!r} is not a Videos API address")
    return _SPEC_BASE_PATH + parts.path[start:], dict(parse_qsl(parts.query, keep_blank_values=True))


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _raise_as_violation(where: str, check: Callable[[], object]) -> None:
    try:
        check()
    except Exception as exc:
        details = [str(exc)]
        cause = exc.__cause__
        while cause is not None:
            if str(cause) not in details:
                details.append(str(cause))
            cause = cause.__cause__
        raise ContractViolation(f"{where}: {' / '.join(details)}") from exc


def _json(where: str, body_bytes: bytes) -> Any:
    try:
        return json.loads(body_bytes)
    except ValueError as exc:
        raise ContractViolation(f"{where}: body is not JSON: {exc}") from None


def _validate_schema(where: str, instance: Any, schema: Mapping[str, Any] | str) -> None:
    """Validate against a schema of the spec (or a component's name), resolving its ``$ref``s."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    # The spec's components ride along in the root schema so that "#/components/..." refs resolve.
    root = {**schema, "components": _spec()["components"]}
    errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(instance), key=str)
    if errors:
        raise ContractViolation(f"{where}: " + "; ".join(error.message for error in errors))


def _operation(where: str, method: str, spec_path: str) -> tuple[str, dict[str, Any]]:
    """The spec's path template and operation object for a concrete ``/v1/videos...`` path."""
    relative = spec_path.removeprefix(_SPEC_BASE_PATH)
    for template, operations in _spec()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, relative) and method.lower() in operations:
            return template, operations[method.lower()]
    raise ContractViolation(f"{where}: no such operation in the spec")


def _validate_multipart_body(where: str, method: str, spec_path: str, content_type: str, body: bytes) -> None:
    _, operation = _operation(where, method, spec_path)
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" not in content:
        raise ContractViolation(f"{where}: the operation does not accept multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise ContractViolation(f"{where}: body is not a valid multipart/form-data document")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ContractViolation(f"{where}: a multipart part has no field name")
        if name in fields:
            raise ContractViolation(f"{where}: multipart field {name!r} is sent more than once")
        is_file = part.get_filename() is not None or part.get_content_maintype() != "text"
        if is_file:
            fields[name] = _FILE_PLACEHOLDER
        else:
            payload = part.get_payload(decode=True)
            charset = part.get_content_charset() or "utf-8"
            fields[name] = payload.decode(charset) if isinstance(payload, bytes) else ""
    for name in list(fields):
        nested = _NESTED_FIELD.fullmatch(name)
        if nested is not None:
            value = fields.pop(name)
            fields.setdefault(nested[1], {})[nested[2]] = value
    if spec_path == _EXTENSIONS_PATH and fields.get("seconds") in _EXTENSION_ONLY_SECONDS:
        fields["seconds"] = "4"
    _validate_schema(where, fields, content["multipart/form-data"]["schema"])


def _as_enum_extension(body_bytes: bytes) -> bytes:
    """An extension body with a 16 or 20 second segment, as one the enum accepts (see the top)."""
    try:
        body = json.loads(body_bytes)
    except ValueError:
        return body_bytes
    if isinstance(body, dict) and body.get("seconds") in _EXTENSION_ONLY_SECONDS:
        return json.dumps({**body, "seconds": "4"}).encode()
    return body_bytes


def _check_binary_response(where: str, method: str, spec_path: str, media_type: str, body: bytes) -> None:
    _, operation = _operation(where, method, spec_path)
    declared = set(operation["responses"]["200"].get("content", {}))
    if media_type not in declared:
        raise ContractViolation(f"{where}: content type {media_type!r} is not one of {sorted(declared)}")
    if not body:
        raise ContractViolation(f"{where}: empty body")
