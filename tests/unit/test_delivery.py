"""The delivery decision, from the facts alone."""

from __future__ import annotations

from bot.domain.delivery import MIB, FileFacts, Undeliverable, UseFitted, UseLink, UseOriginal, decide


def test_a_file_within_the_limit_is_uploaded_as_it_is() -> None:
    assert decide(FileFacts(size=10 * MIB, limit=10 * MIB)) == UseOriginal()


def test_a_larger_file_that_re_encoding_fits_is_uploaded_re_encoded() -> None:
    decision = decide(FileFacts(size=30 * MIB, limit=10 * MIB, fitted_size=9 * MIB, links_configured=True))
    assert decision == UseFitted(
        "Re-encoded from 30.0 MiB to 9.0 MiB to fit this server's 10 MiB upload limit."
    )


def test_one_re_encoding_cannot_fit_is_linked_when_links_are_configured() -> None:
    facts = FileFacts(size=300 * MIB, limit=10 * MIB, fit_problem="Too long to stay watchable.")
    assert decide(FileFacts(**{**facts.__dict__, "links_configured": True})) == UseLink()
    assert decide(facts) == Undeliverable(
        "The video is 300.0 MiB, over this server's 10 MiB upload limit, and could not be shrunk to fit. "
        "Too long to stay watchable."
    )
