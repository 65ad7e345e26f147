"""The model catalog: which (model, size, seconds) combinations exist and what they cost.

One credit is one second of the cheapest 720p video. The default catalog is Sora 2's, as documented
in the original Videos API; an admin pointing the bot at another provider replaces it with a TOML file
(``MODELS_FILE``), see ``README.md`` for the format.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING

from bot.domain.errors import CatalogError, UserError

if TYPE_CHECKING:
    from bot.domain.jobs import Job

_MAX_CHOICES = 25  # Discord's limit on choices for one option


@dataclass(frozen=True)
class Rate:
    """What one second of video costs for a set of sizes of one model."""

    sizes: tuple[str, ...]
    credits_per_second: int
    usd_per_second: float


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

    def quote(self, model: str | None = None, size: str | None = None, seconds: int | None = None) -> Quote:
        """Validate a request, filling defaults, and price it. Raises ``UserError`` with advice."""
        spec = self.get(model or self.default_model)
        if spec is None:
            names = ", ".join(m.name for m in self.models)
            raise UserError(f"There is no model called `{model}`. Pick one of: {names}.")
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
    return Catalog(
        models=(
            ModelSpec(
                name="sora-2",
                label="Sora 2",
                seconds=(4, 8, 12),
                rates=(Rate(portrait_landscape, 1, 0.10),),
                default_seconds=4,
                default_size="720x1280",
            ),
            ModelSpec(
                name="sora-2-pro",
                label="Sora 2 Pro",
                seconds=(4, 8, 12),
                rates=(Rate(portrait_landscape, 3, 0.30), Rate(tall_wide, 5, 0.50)),
                default_seconds=4,
                default_size="720x1280",
                seconds_per_video_second=20.0,
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
        )
        if spec.default_seconds not in spec.seconds:
            raise CatalogError(f"{label}: default_seconds is not one of `seconds`")
        if spec.rate_for(spec.default_size) is None:
            raise CatalogError(f"{label}: default_size is not one of the sizes in `rates`")
        models.append(spec)
    _expect(raw, "default_model", str, "a model name", where)
    default = raw.get("default_model", models[0].name)
    return Catalog(models=tuple(models), default_model=str(default), source=where)
