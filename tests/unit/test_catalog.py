from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.catalog import default_catalog, load_catalog
from bot.domain.errors import CatalogError, UserError


def test_defaults_fill_in_and_price_the_cheapest_video() -> None:
    quote = default_catalog().quote()
    assert (quote.model, quote.size, quote.seconds) == ("sora-2", "720x1280", 4)
    assert quote.credits == 4
    assert quote.usd == pytest.approx(0.40)
    assert (quote.width, quote.height) == (720, 1280)


@pytest.mark.parametrize(
    ("model", "size", "seconds", "credits", "usd"),
    [
        ("sora-2", "1280x720", 12, 12, 1.20),
        ("sora-2-pro", "720x1280", 8, 24, 2.40),
        ("sora-2-pro", "1792x1024", 4, 20, 2.00),
        ("sora-2-pro", "1024x1792", 12, 60, 6.00),
    ],
)
def test_cost_is_seconds_times_rate(model: str, size: str, seconds: int, credits: int, usd: float) -> None:
    quote = default_catalog().quote(model, size, seconds)
    assert quote.credits == credits
    assert quote.usd == pytest.approx(usd)


def test_refusals_name_the_valid_choices() -> None:
    catalog = default_catalog()
    with pytest.raises(UserError, match="Sizes it supports: 720x1280, 1280x720"):
        catalog.quote("sora-2", "1792x1024", 4)
    with pytest.raises(UserError, match="Pick 4, 8, 12 seconds"):
        catalog.quote("sora-2", None, 5)
    with pytest.raises(UserError, match="sora-2, sora-2-pro"):
        catalog.quote("wan-2.2", None, None)


def test_choices_cover_every_model() -> None:
    catalog = default_catalog()
    assert catalog.all_sizes == ("720x1280", "1280x720", "1024x1792", "1792x1024")
    assert catalog.all_seconds == (4, 8, 12)


def test_toml_catalog_replaces_the_default(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        """
default_model = "wan-2.2"

[[models]]
name = "wan-2.2"
label = "Wan 2.2"
seconds = [5, 10]
default_size = "1280x720"

[[models.rates]]
sizes = ["1280x720", "720x1280"]
credits_per_second = 2
usd_per_second = 0.05
""",
        encoding="utf-8",
    )
    catalog = load_catalog(path)
    quote = catalog.quote()
    assert (quote.model, quote.size, quote.seconds, quote.credits) == ("wan-2.2", "1280x720", 5, 10)
    assert quote.usd == pytest.approx(0.25)
    with pytest.raises(UserError):
        catalog.quote("sora-2")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not toml [[", "not valid TOML"),
        ("[[models]]\nname='x'\nseconds=[4]\n", "at least one [[models.rates]]"),
        ("[[models]]\nseconds=[4]\n", "`name` is required"),
        (
            "[[models]]\nname='x'\nseconds=[4]\n[[models.rates]]\nsizes=['big']\ncredits_per_second=1\n",
            "sizes must",
        ),
        (
            "default_model='y'\n[[models]]\nname='x'\nseconds=[4]\n[[models.rates]]\nsizes=['1x1']\ncredits_per_second=1\n",
            "default_model 'y'",
        ),
    ],
)
def test_bad_catalog_files_say_what_is_wrong(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match=complaint.replace("[", r"\[").replace("]", r"\]")) as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope.toml")
