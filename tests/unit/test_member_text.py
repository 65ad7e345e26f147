"""Member-typed text shown by the bot: nothing in it renders as a link, mention or markup.

``live_markup`` reads text the way Discord's parser does where it matters: an escape (``\\`` and a
character that is not a letter, digit or whitespace) is literal; at every other position it looks
for the start of a masked link, autolink, bare URL, mention, timestamp, emoji, code span, spoiler,
emphasis or invite, and at every line start for a heading, subtext, list or quote. It tries every
unescaped position, which is stricter than the real parser (that skips over runs of plain text).
"""

from __future__ import annotations

import csv
import io
import random
import re

import discord
import pytest

from bot.discord.text import ZWSP, csv_row, csv_safe, inert, inert_inline, plain_inline

# JavaScript's \s, which Discord's escape rule (/^\\([^0-9A-Za-z\s])/) excludes.
_JS_SPACE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200B)
}
_LINE_BREAKS = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

# simple-markdown's masked link rule, as Discord's client uses it (titles and <url> included).
_MASKED_LINK = re.compile(
    r"\[((?:\[[^\]]*\]|[^\[\]]|\](?=[^\[]*\]))*)\]"
    r"\(\s*<?((?:\([^)]*\)|[^\s\\]|\\.)*?)>?(?:\s+['\"]([\s\S]*?)['\"])?\s*\)"
)
_AT_POSITION = {
    "masked link": _MASKED_LINK,
    "autolink": re.compile(r"<[^: >]+:/[^ >]+>"),
    "mailto autolink": re.compile(r"<[^ >]+@[^ >]+>"),
    # Stricter than Discord (which links http, https and steam): any scheme, one slash is enough.
    "url": re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/"),
    "mention": re.compile(r"<(?:@[!&]?|#|/|t:|a?:)"),
    "mass mention": re.compile(r"@(?:everyone|here)", re.IGNORECASE),
    "invite": re.compile(r"discord(?:app)?\.(?:gg|io|me|li|com/invite)/", re.IGNORECASE),
    "markup character": re.compile(r"[*_~|`\[\]()<>]"),
}
_LINE_START = re.compile(r"[ \t]*(?:#|-#|[-*+] |[0-9]+\. |>)")


def _is_escape(text: str, index: int) -> bool:
    nxt = text[index + 1 : index + 2]
    return (
        text[index] == "\\" and nxt != "" and not (nxt.isascii() and nxt.isalnum()) and nxt not in _JS_SPACE
    )


def live_markup(text: str) -> list[str]:
    """What in ``text`` Discord would render as something other than plain text."""
    found: list[str] = []
    index = 0
    while index < len(text):
        if _is_escape(text, index):
            index += 2
            continue
        for name, pattern in _AT_POSITION.items():
            match = pattern.match(text, index)
            if match:
                found.append(f"{name}: {match.group()!r}")
        index += 1
    for line in _LINE_BREAKS.split(text):
        if _LINE_START.match(line):
            found.append(f"line start: {line[:20]!r}")
    return found


def rendered(text: str) -> str:
    """The characters Discord shows for ``text`` (escapes resolved), less zero-width spaces."""
    out: list[str] = []
    index = 0
    while index < len(text):
        if _is_escape(text, index):
            out.append(text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out).replace(ZWSP, "")


def as_typed(text: str) -> str:
    """What the member typed, as ``inert`` keeps it: lines joined with \\n, no bidi controls, and
    (for comparison with ``rendered``) no zero-width spaces."""
    text = re.sub("[\u202a-\u202e\u2066-\u2069]", "", text)
    return "\n".join(_LINE_BREAKS.split(text)).replace(ZWSP, "")


FINDING = (
    "a fox running through snow at dawn [at dawn](https://ok.example) — "
    "[Claim your Nitro](https://evil.example/login)"
)


# -- the finding ---------------------------------------------------------------------------------


def test_the_checker_sees_the_live_link_that_escape_markdown_left_on_the_card() -> None:
    # What the card showed before: one masked link per line escaped, the second one live.
    escaped = discord.utils.escape_markdown(FINDING)
    assert any(item.startswith("masked link") and "evil.example" in item for item in live_markup(escaped)), (
        escaped
    )


def test_the_finding_s_prompt_is_inert_and_reads_the_same() -> None:
    out = inert(FINDING)
    assert live_markup(out) == []
    assert rendered(out) == FINDING
    assert "https://" not in out
    assert out.startswith(
        "a fox running through snow at dawn \\[at dawn\\]\\(https:" + ZWSP + "//ok.example\\)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "[one](https://a.example) [two](https://b.example) [three](https://c.example)",
        "[[nested]](https://evil.example)",
        "[[a][b]](https://evil.example) and [x[y]z](https://evil.example)",
        "[a](<https://evil.example>)",
        '[a](https://evil.example "a title")',
        "[a](https://evil.example 'a title')",
        "[a]( https://evil.example )",
        "[spread\nover](https://evil.example)\n[lines](\nhttps://evil.example\n)",
        "[a](evil.example/login)",
        "\\[a](https://evil.example)",  # the member's own backslash can't un-escape the bot's
        "\\\\[a](https://evil.example)",
        "[a]\\(https://evil.example)",
        "[**bold**](https://evil.example)",
        "||[hidden](https://evil.example)||",
    ],
)
def test_no_masked_link_of_any_form_renders(text: str) -> None:
    out = inert(text)
    assert live_markup(out) == [], out
    assert rendered(out) == text


@pytest.mark.parametrize(
    "text",
    [
        "https://evil.example/login",
        "see http://evil.example now",
        "HTTPS://EVIL.EXAMPLE",
        "<https://evil.example>",
        "<a:/b>",
        "<mailto:x@evil.example>",
        "<me@evil.example>",
        "steam://run/123",
        "javascript:/alert(1)",
        "https:/evil.example",
        "(https://evil.example)",
        "https://evil.example/a_(b)_c?d=e#f",
        "\\https://evil.example",
    ],
)
def test_no_autolink_or_bare_url_renders(text: str) -> None:
    out = inert(text)
    assert live_markup(out) == [], out
    assert re.search(r"[A-Za-z]:/", out) is None
    assert rendered(out) == text


def test_scheme_less_hosts_are_left_as_typed_because_discord_does_not_link_them() -> None:
    text = "www.example.com and example.com/login"
    assert inert(text) == text


@pytest.mark.parametrize(
    "text",
    ["discord.gg/free-nitro", "join DISCORD.GG/x", "discordapp.com/invite/abc", "discord.com/invite/abc"],
)
def test_invite_links_do_not_become_join_cards(text: str) -> None:
    out = inert(text)
    assert live_markup(out) == [], out
    assert rendered(out) == text


@pytest.mark.parametrize(
    "text",
    [
        "@everyone",
        "@here look",
        "hey @EveryOne and @HERE",
        "<@123456789012345678>",
        "<@!123456789012345678>",
        "<@&123456789012345678>",
        "<#123456789012345678>",
        "</video:123456789012345678>",
        "<t:1800000000:R>",
        "<:fox:123456789012345678>",
        "<a:fox:123456789012345678>",
    ],
)
def test_mentions_timestamps_and_emoji_show_as_their_text(text: str) -> None:
    out = inert(text)
    assert live_markup(out) == [], out
    assert rendered(out) == text


def test_everyone_is_broken_by_a_zero_width_space_like_discord_py_does() -> None:
    assert inert("@everyone") == "@" + ZWSP + "everyone"
    assert discord.utils.escape_mentions("@everyone") == inert("@everyone")


@pytest.mark.parametrize(
    "text",
    [
        "# Free Nitro",
        "## claim now",
        "### here",
        "-# small print",
        "- a list",
        "* a list",
        "+ a list",
        "1. numbered",
        "42. numbered",
        "> quote",
        ">>> long quote",
        "   # indented heading",
        "  - nested item",
        "first line\n# heading on the second",
        "first\r# after a carriage return",
        "first\u2028# after a line separator",
        "first\r\n> after CRLF",
        "```\ncode fence\n```",
        "`inline`",
        "**bold** *it* _it_ __under__ ~~strike~~ ||spoiler||",
    ],
)
def test_headings_lists_quotes_code_and_emphasis_do_not_render(text: str) -> None:
    out = inert(text)
    assert live_markup(out) == [], out
    assert rendered(out) == as_typed(text)


@pytest.mark.parametrize(
    "text",
    [
        "a red fox running through snow",
        "It's 5 o'clock, isn't it? Yes! 100% sure; #1 fan, 3.5 stars, e-mail me.",
        "Le renard roux court dans la neige — à l'aube.",
        "雪の中を走る赤いキツネ 🦊",
        "ratio 16:9, 4k, 24fps",
        "",
    ],
)
def test_plain_prompts_are_unchanged(text: str) -> None:
    assert inert(text) == text
    assert inert_inline(text, 500) == text


def test_ordinary_punctuation_is_only_escaped() -> None:
    text = "a cat (orange) jumps > a dog_house <3"
    out = inert(text)
    assert out == "a cat \\(orange\\) jumps \\> a dog\\_house \\<3"
    assert rendered(out) == text


def test_line_breaks_and_leading_spaces_are_kept() -> None:
    assert inert("one\n  two\n\nthree\n") == "one\n  two\n\nthree\n"


def test_bidi_overrides_are_dropped_so_they_cannot_reverse_the_bot_s_text() -> None:
    assert inert("abc\u202edef\u2066x\u2069") == "abcdefx"
    assert inert_inline("\u202e nitro", 50) == "nitro"


def test_applying_inert_twice_is_still_inert() -> None:
    for text in (FINDING, "# heading\n- list\n@everyone <@1> https://x.example", "\\[a](b)"):
        twice = inert(inert(text))
        assert live_markup(twice) == [], twice


# -- one line, clipping --------------------------------------------------------------------------


def test_inline_folds_every_line_break_and_run_of_spaces() -> None:
    # Folded, the "#" is no longer at a line start, so it needs no escape; the first one does.
    assert inert_inline("a\n\n# b\r\nc\u2028d   e\t", 100) == "a # b c d e"
    assert inert_inline("# a\n# b", 100) == "\\# a # b"


def test_inline_clips_with_an_ellipsis_within_the_limit() -> None:
    assert inert_inline("a red fox running through snow", 10) == "a red fox…"
    assert inert_inline("a red fox", 9) == "a red fox"


def test_the_clip_never_cuts_an_escape_in_half() -> None:
    # "aaaa\[b": cutting after 5 characters would leave "aaaa\" and a backslash that escapes "…".
    assert inert_inline("aaaa[b", 6) == "aaaa…"
    assert inert_inline("aaaa[b", 7) == "aaaa\\[b"
    # Two typed backslashes are two escaped pairs; the clip keeps whole pairs only.
    assert inert_inline("aaa\\\\", 6) == "aaa\\\\…"
    assert inert_inline("aaa\\\\", 5) == "aaa…"


def test_every_clip_of_a_hostile_prompt_is_inert_and_within_the_limit() -> None:
    text = FINDING + " <@1> @everyone ||x|| `y` \\ ** " * 3
    full = inert_inline(text, 10_000)
    for limit in range(1, len(full) + 2):
        out = inert_inline(text, limit)
        assert len(out) <= limit
        assert live_markup(out) == [], (limit, out)
        if out != full:
            assert out.endswith("…")
            kept = out[:-1]
            assert full.startswith(kept)
            trailing = len(kept) - len(kept.rstrip("\\"))
            assert trailing % 2 == 0, (limit, out)


def test_multiline_inert_clips_too() -> None:
    out = inert("# one\n# two\n# three", limit=12)
    assert out == "\\# one\n\\# t…"
    assert live_markup(out) == []


def test_a_limit_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        inert_inline("x", 0)


# -- where no Markdown renders ------------------------------------------------------------------


def test_plain_inline_adds_no_backslashes_but_breaks_urls_and_mentions() -> None:
    out = plain_inline("#12 · [Claim](https://evil.example)\n@everyone (now)", 100)
    assert out == "#12 · [Claim](https:" + ZWSP + "//evil.example) @" + ZWSP + "everyone (now)"
    assert "\\" not in out


def test_plain_inline_clips_to_a_choice_name() -> None:
    out = plain_inline("a red fox running through snow " * 10, 100)
    assert 95 <= len(out) <= 100
    assert out.endswith("…")


# -- generated strings -------------------------------------------------------------------------

_FRAGMENTS = [
    "[", "]", "(", ")", "<", ">", "\\", "\\\\", '"', "'", " ", "  ", "\t", "\n", "\r", "\r\n", "\u2028",
    "https://", "http://", "HTTPS://", "steam://", "a:/", ":", "/", "//", "www.", "discord.gg/",
    "@everyone", "@here", "@", "<@", "<@&", "<#", "</", "<t:", "<:e:", "<a:e:", "123", "&",
    "#", "## ", "-# ", "- ", "* ", "+ ", "1. ", "> ", ">>> ", "`", "```", "|", "||", "*", "**",
    "_", "__", "~", "~~", "fox", "a", "é", "🦊", "\u200b", "\u202e", ".", ",", "!", "?",
]  # fmt: skip


def _generated(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def test_generated_strings_never_render_markup_and_read_as_typed() -> None:
    for text in _generated(400, seed=20261202):
        out = inert(text)
        assert live_markup(out) == [], (text, out)
        assert rendered(out) == as_typed(text), (text, out)
        # Even read raw, ignoring escapes: every "(" is escaped, so "](" never occurs.
        assert _MASKED_LINK.search(out) is None
        assert re.search(r"[A-Za-z]://", out) is None
        assert live_markup(inert(out)) == [], (text, out)


def test_generated_strings_stay_inert_on_one_line_at_any_clip() -> None:
    rng = random.Random(7)
    for text in _generated(300, seed=1202):
        limit = rng.randint(1, 80)
        out = inert_inline(text, limit)
        assert len(out) <= limit
        assert "\n" not in out
        assert live_markup(out) == [], (text, limit, out)
        plain = plain_inline(text, limit)
        assert len(plain) <= limit
        assert re.search(r"[A-Za-z]:/", plain) is None


# -- CSV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell", ["=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("https://evil.example")', "＝1+1"]
)
def test_cells_a_spreadsheet_would_run_get_a_quote(cell: str) -> None:
    assert csv_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["sora-2", "a red fox", "1+1", " =1", "", "'=1"])
def test_other_cells_are_unchanged(cell: str) -> None:
    assert csv_safe(cell) == cell


def test_numbers_stay_numbers() -> None:
    assert csv_row([-5, 0, 1.5, None, "=x"]) == [-5, 0, 1.5, None, "'=x"]


def test_a_written_csv_reads_back_with_the_quote() -> None:
    out = io.StringIO()
    csv.writer(out).writerow(csv_row(["member", "=cmd|' /C calc'!A0", 12, "a, b\n"]))
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["member", "'=cmd|' /C calc'!A0", "12", "a, b\n"]
