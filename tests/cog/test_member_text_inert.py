"""A hostile prompt (the whole bot in-process, tests/inprocess.py): the public card and the Details reply show it as text.

A member types masked links (one harmless-looking, one phishing), an autolink, ``@everyone`` and a
user mention into ``/video``. Whatever the bot posts must carry no live masked link, no ``://``
URL and no ping, and still read as what the member typed.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import embed_of, is_final
from tests.inprocess import InProcessBot
from tests.unit.test_member_text import live_markup, rendered

READY = "🎬 Your video is ready"
HOSTILE = (
    "a fox at [dawn](https://ok.example) — [Claim your Nitro](https://evil.example/login) "
    "<https://evil.example> @everyone <@123>"
)


def texts(embed: dict[str, Any]) -> list[str]:
    """Every piece of an embed that Discord shows as text."""
    found = [embed.get("title") or "", embed.get("description") or ""]
    found += [part for f in embed.get("fields", []) for part in (f["name"], f["value"])]
    found += [(embed.get("footer") or {}).get("text") or "", (embed.get("author") or {}).get("name") or ""]
    return found


def assert_inert_card(embed: dict[str, Any]) -> None:
    description = embed["description"]
    assert live_markup(description) == [], description
    assert rendered(description) == HOSTILE  # reads as typed, character for character
    for text in texts(embed):
        assert "://" not in text, text
        assert "@everyone" not in text and "<@123>" not in text, text
        assert "evil.example)" not in text.replace("\\)", ""), text


async def test_a_hostile_prompt_is_inert_on_the_card_and_in_details(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    mark = fake.mark()
    handle = await fake.invoke_command("video", {"prompt": HOSTILE, "seconds": 4})
    card = await handle.original_message(timeout=60, predicate=is_final(READY))
    # The provider got the prompt as typed: only what the bot shows is made inert.
    assert any(
        isinstance(r.json_body, dict) and r.json_body.get("prompt") == HOSTILE for r in renderer.requests
    )

    assert_inert_card(embed_of(card))
    shown = [edit.changes["embeds"][0] for edit in card.edits if edit.changes.get("embeds")]
    assert shown, "the card was edited while the job ran"
    for embed in shown:
        assert_inert_card(embed)

    job = int(embed_of(card)["footer"]["text"].split("#")[1])
    details = await fake.invoke_component(card, f"videobot:details:{job}")
    reply = (await details.wait_response(timeout=10)).json
    assert reply["type"] == 4 and reply["data"]["flags"] & 64
    (embed,) = reply["data"]["embeds"]
    assert embed["title"] == f"Job #{job}"
    assert_inert_card(embed)

    # No write of the bot's could ping anyone, whatever the text said.
    sent = [r for r in fake.requests[mark:] if isinstance(r.json, dict) and "allowed_mentions" in r.json]
    assert sent and all(r.json["allowed_mentions"]["parse"] == [] for r in sent)
