"""What each model's provider offers beyond a new video (remix, image input, extend, edit), what
those cost, and how ``MODELS_FILE`` says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.catalog import EXTENSION_SECONDS, default_catalog, load_catalog
from bot.domain.errors import CatalogError, UserError

HEAD = """
[[models]]
name = "m"
seconds = [5, 10]
"""
RATES = """
[[models.rates]]
sizes = ["1280x720", "720x1280"]
credits_per_second = 2
usd_per_second = 0.05
"""
BASE = HEAD + RATES


def test_sora_2_extends_by_4_to_20_seconds_and_edits_priced_like_a_new_video() -> None:
    catalog = default_catalog()
    for model in catalog.models:
        assert model.remix and model.image_input
        assert model.extend is not None and model.extend.seconds == EXTENSION_SECONDS == (4, 8, 12, 16, 20)
        assert model.edit is not None
    assert catalog.extension_seconds == (4, 8, 12, 16, 20)
    extension = catalog.quote_extension("sora-2", "720x1280", 16)
    assert (extension.seconds, extension.credits, extension.usd) == (16, 16, pytest.approx(1.6))
    assert catalog.quote_extension("sora-2-pro", "1792x1024", 20).credits == 100  # 5 a second at that size
    assert catalog.quote_extension("sora-2", "720x1280").seconds == 4  # the shortest by default
    with pytest.raises(UserError, match="extends videos by 4, 8, 12, 16, 20 seconds, not 6"):
        catalog.quote_extension("sora-2", "720x1280", 6)


@pytest.mark.parametrize(
    ("length", "priced"), [(0.8, 4), (4.0, 4), (4.01, 8), (5.3, 8), (16.2, 20), (20.0, 20)]
)
def test_an_edit_is_priced_as_a_video_of_its_length_rounded_up(length: float, priced: int) -> None:
    quote = default_catalog().quote_edit("sora-2", "1280x720", length)
    assert (quote.seconds, quote.credits) == (priced, priced)


def test_an_edit_longer_than_the_model_allows_is_refused() -> None:
    with pytest.raises(UserError, match="edits videos of at most 20 seconds"):
        default_catalog().quote_edit("sora-2", None, 24)


def test_a_models_file_without_capability_keys_offers_remix_and_images_only(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, BASE))
    [model] = catalog.models
    assert (model.remix, model.image_input, model.extend, model.edit) == (True, True, None, None)
    assert not catalog.can_extend and not catalog.can_edit
    with pytest.raises(UserError, match="can't be extended"):
        catalog.quote_extension("m", "1280x720", 5)


def test_capability_keys_and_their_own_rates(tmp_path: Path) -> None:
    keys = "remix = false\nimage_input = false\nedit = true\n"
    text = (
        HEAD
        + keys
        + RATES
        + """
[models.extend]
seconds = [5, 10]
credits_per_second = 3
usd_per_second = 0.5
"""
    )
    catalog = load_catalog(_write(tmp_path, text))
    [model] = catalog.models
    assert (model.remix, model.image_input) == (False, False)
    assert catalog.extension_seconds == (5, 10)
    quote = catalog.quote_extension("m", "720x1280", 10)
    assert (quote.credits, quote.usd) == (30, pytest.approx(5.0))
    # ``edit = true``: priced at the model's own lengths and rate.
    edit = catalog.quote_edit("m", "1280x720", 6.5)
    assert (edit.seconds, edit.credits) == (10, 20)
    # ``extend = true`` gives the Videos API's lengths.
    assert load_catalog(_write(tmp_path, HEAD + "extend = true\n" + RATES)).extension_seconds == (
        4,
        8,
        12,
        16,
        20,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("extend = 4\n", "`extend` must be true, false or a [models.extend] table"),
        ("remix = 1\n", "`remix` must be true or false"),
        ("[models.extend]\nseconds = []\n", "`extend`.seconds must be a list of whole numbers"),
        ("[models.extend]\nseconds = [0]\n", "`extend`.seconds must be a list of whole numbers"),
        ("[models.edit]\ncredits_per_second = -1\n", "`edit`.credits_per_second must be a whole number"),
        ("[models.edit]\nusd_per_second = true\n", "`edit`.usd_per_second must be a number"),
        ("[models.edit]\nsecond = [4]\n", "`edit` has unknown keys: second"),
    ],
)
def test_capability_mistakes_are_one_clear_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        text = HEAD + extra + RATES if extra.startswith(("extend =", "remix =")) else BASE + extra
        load_catalog(_write(tmp_path, text))
    assert message in str(caught.value) and "models[0] (m)" in str(caught.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path
