"""The model catalog: which (model, size, seconds) combinations exist and what they cost.

One credit is one second of the cheapest 720p video. The default catalog is Sora 2's, as documented
in the original Videos API; an admin pointing the bot at another provider replaces it with a TOML file
(``MODELS_FILE``), see ``README.md`` for the format.

Each model also says which operations beyond a new video its provider offers (``remix``,
``image_input``, ``extend`` with the lengths a new segment may have, ``edit``) and what they cost: by
default an extension or an edit costs what a new video of that length costs at that size. The
Discord layer offers an operation only when the model has it (and the provider has not answered
that it lacks the endpoint).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING

from bot.domain.errors import CatalogError, UserError

if TYPE_CHECKING:
    from bot.domain.jobs import Job

_MAX_CHOICES = 25  # Discord's limit on choices for one option
# The lengths the Videos API allows for a new extension segment (its extension description).
EXTENSION_SECONDS = (4, 8, 12, 16, 20)
# The longest clip a member may upload for /edit (DECISIONS: at most 20 s).
MAX_EDIT_CLIP_SECONDS = 20


@dataclass(frozen=True)
class Rate:
    """What one second of video costs for a set of sizes of one model."""

    sizes: tuple[str, ...]
    credits_per_second: int
    usd_per_second: float


@dataclass(frozen=True)
class Operation:
    """An operation beyond a new video (extend, edit) that a model's provider offers.

    ``seconds``: the lengths it comes in (an extension's new segment; the lengths an edit is priced
    at, a clip's length rounded up to the next one). ``credits_per_second`` and ``usd_per_second``:
    its own rate; None prices it like a new video of that length at that size."""

    seconds: tuple[int, ...]
    credits_per_second: int | None = None
    usd_per_second: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    seconds: tuple[int, ...]
    rates: tuple[Rate, ...]
    default_seconds: int
    default_size: str
    # Typical wall-clock generation time for one second of video, used only for the ETA shown
    # before the provider reports any progress.
    seconds_per_video_second: float = 10.0
    remix: bool = True  # POST /videos/{id}/remix
    image_input: bool = True  # a starting image (input_reference) for a new video
    extend: Operation | None = None  # POST /videos/extensions; None: not offered
    edit: Operation | None = None  # POST /videos/edits; None: not offered

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(size for rate in self.rates for size in rate.sizes)

    def rate_for(self, size: str) -> Rate | None:
        for rate in self.rates:
            if size in rate.sizes:
                return rate
        return None


@dataclass(frozen=True)
class Quote:
    """A validated request and its price."""

    model: str
    size: str
    seconds: int
    credits: int
    usd: float

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])


@dataclass(frozen=True)
class Catalog:
    models: tuple[ModelSpec, ...]
    default_model: str
    source: str = "built-in"
    _by_name: dict[str, ModelSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {m.name: m for m in self.models}
        object.__setattr__(self, "_by_name", by_name)
        if not self.models:
            raise CatalogError(f"{self.source}: the catalog lists no models")
        if self.default_model not in by_name:
            raise CatalogError(f"{self.source}: default_model {self.default_model!r} is not in the catalog")
        if len(self.models) > _MAX_CHOICES or len(self.all_sizes) > _MAX_CHOICES:
            raise CatalogError(f"{self.source}: Discord allows at most {_MAX_CHOICES} models and sizes")
        if len(self.extension_seconds) > _MAX_CHOICES:
            raise CatalogError(f"{self.source}: Discord allows at most {_MAX_CHOICES} extension lengths")

    def get(self, name: str) -> ModelSpec | None:
        return self._by_name.get(name)

    def expected_seconds(self, job: Job) -> float:
        """How long the provider usually takes for ``job`` (its model's typical pace; 10 s per
        second of video for a model no longer in the catalog)."""
        spec = self.get(job.model)
        return (spec.seconds_per_video_second if spec else 10.0) * job.seconds

    @property
    def all_sizes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(size for m in self.models for size in m.sizes))

    @property
    def all_seconds(self) -> tuple[int, ...]:
        return tuple(sorted({s for m in self.models for s in m.seconds}))

    @property
    def extension_seconds(self) -> tuple[int, ...]:
        """Every segment length some model can extend by (the choices of ``/extend``)."""
        return tuple(sorted({s for m in self.models if m.extend for s in m.extend.seconds}))

    @property
    def can_extend(self) -> bool:
        return any(m.extend for m in self.models)

    @property
    def can_edit(self) -> bool:
        return any(m.edit for m in self.models)

    def _spec(self, model: str | None) -> ModelSpec:
        spec = self.get(model or self.default_model)
        if spec is None:
            names = ", ".join(m.name for m in self.models)
            raise UserError(f"There is no model called `{model}`. Pick one of: {names}.")
        return spec

    def _priced(self, spec: ModelSpec, size: str, seconds: int, operation: Operation) -> Quote:
        rate = spec.rate_for(size)
        if rate is None:
            sizes = ", ".join(spec.sizes)
            raise UserError(f"`{spec.name}` can't make {size} videos. Sizes it supports: {sizes}.")
        credits = (
            rate.credits_per_second if operation.credits_per_second is None else operation.credits_per_second
        )
        usd = rate.usd_per_second if operation.usd_per_second is None else operation.usd_per_second
        return Quote(spec.name, size, seconds, seconds * credits, round(seconds * usd, 4))

    def quote_extension(self, model: str, size: str, seconds: int | None = None) -> Quote:
        """Validate and price an extension of a ``model`` video of ``size`` by a new segment of
        ``seconds`` (default: the shortest it allows). The price is the segment's."""
        spec = self._spec(model)
        if spec.extend is None:
            raise UserError(f"`{spec.name}` videos can't be extended with this bot's video provider.")
        allowed = spec.extend.seconds
        seconds = allowed[0] if seconds is None else seconds
        if seconds not in allowed:
            choices = ", ".join(str(s) for s in allowed)
            raise UserError(
                f"`{spec.name}` extends videos by {choices} seconds, not {seconds}. Pick one of those."
            )
        return self._priced(spec, size, seconds, spec.extend)

    def quote_edit(self, model: str | None, size: str | None, length: float) -> Quote:
        """Validate and price an edit of a video ``length`` seconds long: priced as a video of that
        length rounded up to the next length the model's edit allows."""
        spec = self._spec(model)
        if spec.edit is None:
            raise UserError(f"`{spec.name}` videos can't be edited with this bot's video provider.")
        size = size or spec.default_size
        whole = math.ceil(length - 1e-6)
        priced = next((s for s in sorted(spec.edit.seconds) if s >= whole), None)
        if priced is None:
            longest = max(spec.edit.seconds)
            raise UserError(
                f"That video is {length:.1f} s long; `{spec.name}` edits videos of at most {longest} seconds."
            )
        return self._priced(spec, size, priced, spec.edit)

    def quote(self, model: str | None = None, size: str | None = None, seconds: int | None = None) -> Quote:
        """Validate a request, filling defaults, and price it. Raises ``UserError`` with advice."""
        spec = self._spec(model)
        size = size or spec.default_size
        seconds = spec.default_seconds if seconds is None else seconds  # 0 is a value, not unset
        rate = spec.rate_for(size)
        if rate is None:
            sizes = ", ".join(spec.sizes)
            raise UserError(f"`{spec.name}` can't make {size} videos. Sizes it supports: {sizes}.")
        if seconds not in spec.seconds:
            allowed = ", ".join(str(s) for s in spec.seconds)
            raise UserError(f"`{spec.name}` can't make {seconds}-second videos. Pick {allowed} seconds.")
        return Quote(
            model=spec.name,
            size=size,
            seconds=seconds,
            credits=seconds * rate.credits_per_second,
            usd=round(seconds * rate.usd_per_second, 4),
        )


def default_catalog() -> Catalog:
    portrait_landscape = ("720x1280", "1280x720")
    tall_wide = ("1024x1792", "1792x1024")
    # Sora 2: extensions by 4-20 s and edits, each priced like a new video of that length.
    extend = Operation(EXTENSION_SECONDS)
    edit = Operation(EXTENSION_SECONDS)
    return Catalog(
        models=(
            ModelSpec(
                name="sora-2",
                label="Sora 2",
                seconds=(4, 8, 12),
                rates=(Rate(portrait_landscape, 1, 0.10),),
                default_seconds=4,
                default_size="720x1280",
                extend=extend,
                edit=edit,
            ),
            ModelSpec(
                name="sora-2-pro",
                label="Sora 2 Pro",
                seconds=(4, 8, 12),
                rates=(Rate(portrait_landscape, 3, 0.30), Rate(tall_wide, 5, 0.50)),
                default_seconds=4,
                default_size="720x1280",
                seconds_per_video_second=20.0,
                extend=extend,
                edit=edit,
            ),
        ),
        default_model="sora-2",
    )


def _valid_size(size: object) -> bool:
    if not isinstance(size, str) or "x" not in size:
        return False
    w, _, h = size.partition("x")
    return w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0


def _expect(table: dict[str, object], key: str, kind: type | UnionType, what: str, label: str) -> None:
    """An optional key, when present, must have the right type (TOML's bool is not a number)."""
    if key in table and (isinstance(table[key], bool) or not isinstance(table[key], kind)):
        raise CatalogError(f"{label}: `{key}` must be {what}")


def _operation(
    entry: dict[str, object], key: str, label: str, default_seconds: tuple[int, ...]
) -> Operation | None:
    """``extend`` / ``edit`` of one model: absent or false (not offered), true (offered, with the
    default lengths and the model's rates) or a table with ``seconds``, ``credits_per_second`` and
    ``usd_per_second``, each optional."""
    value = entry.get(key)
    if value is None or value is False:
        return None
    if value is True:
        return Operation(default_seconds)
    where = f"{label}: `{key}`"
    if not isinstance(value, dict):
        raise CatalogError(f"{where} must be true, false or a [models.{key}] table")
    unknown = sorted(set(value) - {"seconds", "credits_per_second", "usd_per_second"})
    if unknown:
        raise CatalogError(f"{where} has unknown keys: {', '.join(unknown)}")
    seconds = value.get("seconds", list(default_seconds))
    if (
        not isinstance(seconds, list)
        or not seconds
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 600 for s in seconds)
    ):
        raise CatalogError(f"{where}.seconds must be a list of whole numbers of seconds (1-600)")
    if len(set(seconds)) > _MAX_CHOICES:
        raise CatalogError(f"{where}.seconds: Discord allows at most {_MAX_CHOICES} choices")
    credits = value.get("credits_per_second")
    if credits is not None and (isinstance(credits, bool) or not isinstance(credits, int) or credits < 0):
        raise CatalogError(f"{where}.credits_per_second must be a whole number")
    usd = value.get("usd_per_second")
    if usd is not None and (isinstance(usd, bool) or not isinstance(usd, int | float) or usd < 0):
        raise CatalogError(f"{where}.usd_per_second must be a number")
    return Operation(tuple(sorted(set(seconds))), credits, None if usd is None else float(usd))


def _flag(entry: dict[str, object], key: str, label: str) -> bool:
    value = entry.get(key, True)
    if not isinstance(value, bool):
        raise CatalogError(f"{label}: `{key}` must be true or false")
    return value


def load_catalog(path: Path | None) -> Catalog:
    """Load a TOML catalog, or the built-in one when ``path`` is None.

    Every mistake is reported as a ``CatalogError`` naming the file and the entry, because this is
    what an admin sees from ``videobot check``.
    """
    if path is None:
        return default_catalog()
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"MODELS_FILE {where} does not exist") from None
    except OSError as exc:
        raise CatalogError(f"MODELS_FILE {where} cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"MODELS_FILE {where} is not valid TOML: {exc}") from None
    entries = raw.get("models")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise CatalogError(f"{where}: expected one or more [[models]] tables")
    models: list[ModelSpec] = []
    for index, entry in enumerate(entries):
        name = entry.get("name")
        label = f"{where}: models[{index}]" + (f" ({name})" if name else "")
        if not isinstance(name, str) or not name:
            raise CatalogError(f"{label}: `name` is required")
        seconds = entry.get("seconds")
        if (
            not isinstance(seconds, list)
            or not seconds
            or not all(isinstance(s, int) and s > 0 for s in seconds)
        ):
            raise CatalogError(f"{label}: `seconds` must be a list of positive whole numbers")
        rates: list[Rate] = []
        raw_rates = entry.get("rates") or []
        if not isinstance(raw_rates, list) or not all(isinstance(r, dict) for r in raw_rates):
            raise CatalogError(f"{label}: `rates` must be [[models.rates]] tables")
        for rate_index, rate in enumerate(raw_rates):
            sizes = rate.get("sizes")
            if not isinstance(sizes, list) or not sizes or not all(_valid_size(s) for s in sizes):
                raise CatalogError(f'{label}: rates[{rate_index}].sizes must be a list like ["1280x720"]')
            credits = rate.get("credits_per_second")
            if not isinstance(credits, int) or credits < 0:
                raise CatalogError(f"{label}: rates[{rate_index}].credits_per_second must be a whole number")
            usd = rate.get("usd_per_second", 0.0)
            if not isinstance(usd, int | float) or usd < 0:
                raise CatalogError(f"{label}: rates[{rate_index}].usd_per_second must be a number")
            rates.append(Rate(tuple(sizes), credits, float(usd)))
        if not rates:
            raise CatalogError(f"{label}: at least one [[models.rates]] entry is required")
        _expect(entry, "label", str, "a string", label)
        _expect(entry, "default_seconds", int, "a whole number", label)
        _expect(entry, "default_size", str, 'a size like "1280x720"', label)
        _expect(entry, "seconds_per_video_second", int | float, "a number", label)
        spec = ModelSpec(
            name=name,
            label=str(entry.get("label", name)),
            seconds=tuple(seconds),
            rates=tuple(rates),
            default_seconds=int(entry.get("default_seconds", seconds[0])),
            default_size=str(entry.get("default_size", rates[0].sizes[0])),
            seconds_per_video_second=float(entry.get("seconds_per_video_second", 10.0)),
            remix=_flag(entry, "remix", label),
            image_input=_flag(entry, "image_input", label),
            extend=_operation(entry, "extend", label, EXTENSION_SECONDS),
            # An edit is priced at the lengths the model makes, a clip rounded up to the next one.
            edit=_operation(entry, "edit", label, tuple(sorted(set(seconds)))),
        )
        if spec.default_seconds not in spec.seconds:
            raise CatalogError(f"{label}: default_seconds is not one of `seconds`")
        if spec.rate_for(spec.default_size) is None:
            raise CatalogError(f"{label}: default_size is not one of the sizes in `rates`")
        models.append(spec)
    _expect(raw, "default_model", str, "a model name", where)
    default = raw.get("default_model", models[0].name)
    return Catalog(models=tuple(models), default_model=str(default), source=where)
