"""Member-typed text made inert before the bot shows it.

A prompt is shown on the bot's own public card, in lists and in moderator views. Whatever a member
types there must read as plain text: no masked link (a phishing link on the bot's message would
carry the bot's authority), no live URL, no heading, quote, list, code block, spoiler or emphasis,
and no mention, not even one that only renders as a name.

How Discord renders text (its client's parser is a fork of simple-markdown; the rules that matter):

- ``\\`` followed by any character that is not a letter, digit or whitespace is an escape: the
  character is shown as it is and starts no markup. Every other rule is tried only where no escape
  consumed the character.
- Masked links ``[label](url "title")`` start at an unescaped ``[``; autolinks ``<scheme:/...>`` and
  ``<name@host>``, and every mention (``<@id>``, ``<@!id>``, ``<@&id>``, ``<#id>``, ``</cmd:id>``),
  timestamp (``<t:...>``) and custom emoji (``<:name:id>``) start at an unescaped ``<``.
- Bare URLs are linked wherever ``http://`` or ``https://`` appears, and escaping does not stop
  it: ``\\https://x`` escapes nothing (``h`` is a letter) and ``escape_markdown`` leaves URLs alone.
  Only a broken scheme separator does. The link-preview unfurler and the mobile clients look for
  the same ``://``.
- Headings (``#``, ``##``, ``###``), subtext (``-#``), lists (``-``, ``*``, ``+``, ``1.``) and block
  quotes (``>``, ``>>>``) count only at the start of a line, possibly after spaces.
- ``@everyone`` and ``@here`` are mentions as plain words.

The approach, chosen so that it holds whatever the member typed and renders exactly what they typed:

- **Backslash-escape every markup character** wherever it is: ``\\ * _ ~ | ` [ ] ( ) < >``. Escaping
  the backslash itself comes first in effect (each character is handled once), so a member's own
  ``\\`` can never un-escape ours. A masked link, autolink, mention, timestamp, emoji, code span,
  spoiler or emphasis then has no unescaped character to start from. ``discord.utils.escape_markdown``
  is not enough: it escapes one ``[...](`` per line (its pattern is greedy), so the second link on a
  line stays live, and it leaves URLs alone.
- **Escape line-start markers** (``#``, ``-``, ``+`` and the ``.`` of ``1.``) after optional spaces,
  on every line, so no heading, subtext or list forms. Lines are first split on every line break
  Python knows (``\\r``, ``\\u2028``…) and rejoined with ``\\n``, so a lone ``\\r`` can't start a line
  we didn't see.
- **Break every scheme separator** with a zero-width space: ``:/`` becomes ``:\\u200b/``. No parser,
  unfurler or linkifier accepts that as a URL, it is invisible, and it also covers ``<a:/b>`` style
  autolinks and any scheme (``steam://``, ``javascript:/``). Text without a scheme (``www.x.com``,
  ``x.com/login``) is not linked by Discord and is left alone.
- **Break ``@everyone`` and ``@here``** with a zero-width space after the ``@`` (what discord.py's
  ``escape_mentions`` does), case-insensitively. ``allowed_mentions`` already stops pings; this also
  stops the highlight.
- **Break invite links** (``discord.gg/…``, ``discord.com/invite/…``) with a zero-width space after the
  dot: Discord shows a "Join" card for them even without a scheme.
- **Drop bidirectional overrides and isolates** (U+202A–U+202E, U+2066–U+2069): inside a list line
  they would reverse the bot's own text after the prompt. Ordinary right-to-left text needs none.

Custom emoji, timestamps and mentions therefore show as their raw text (``<:fox:123>``,
``<@123>``): readable, and never something the member didn't type. An escape is invisible, so the
rendered text is the member's text, character for character (less the bidi controls): a prompt
such as "a red fox running through snow" comes out unchanged. Applying ``inert`` twice is still
inert (the second pass escapes the first pass's backslashes, which then show).

Contexts where Discord renders no Markdown at all (autocomplete choice names, footers, author
names, button labels, modal titles) would show the backslashes, so they take ``plain_inline``,
which only breaks URLs and mentions and folds the text onto one line.

``csv_safe`` is for CSV exports: a cell that a spreadsheet would read as a formula gets a ``'``.
It lives in ``bot.domain.text_csv`` (the services build the CSV) and is re-exported here.
"""

from __future__ import annotations

import re

from bot.domain.text_csv import csv_row as csv_row
from bot.domain.text_csv import csv_safe as csv_safe

ZWSP = "\u200b"
ELLIPSIS = "…"

_ESCAPED = frozenset("\\*_~|`[]()<>")
_LINE_START_MARKERS = frozenset("#-+")
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_NUMBERED_ITEM = re.compile(r"[0-9]+\.")
# Every break str.splitlines knows: Discord's parser (JavaScript) ends lines at some of these too.
_LINE_BREAK = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_SCHEME_SEPARATOR = re.compile(r":(?=/)")
_MASS_MENTION = re.compile(r"@(?=everyone|here)", re.IGNORECASE)
_INVITE_HOST = re.compile(r"discord(?:app)?\.(?=(?:gg|io|me|li|com/invite)/)", re.IGNORECASE)


def inert(text: str, limit: int | None = None) -> str:
    """``text`` made inert for any place where Discord renders Markdown (embed titles,
    descriptions and field values, message content), kept on its lines.

    With ``limit``, the result is at most ``limit`` characters, ending with ``…`` when clipped;
    the cut never falls inside an escape, so the text after it keeps its meaning."""
    return _clip(_markdown_tokens(_lines(text)), limit)


def inert_inline(text: str, limit: int) -> str:
    """``text`` made inert as with ``inert``, on one line (every run of whitespace, line breaks
    included, becomes one space), clipped to ``limit`` characters. For list lines and one-line
    embed fields."""
    return _clip(_markdown_tokens([_one_line(text)]), limit)


def plain_inline(text: str, limit: int) -> str:
    """``text`` on one line, clipped to ``limit``, for places where Discord renders no Markdown
    (autocomplete choice names, footers, author names, labels): nothing to escape there, and a
    backslash would show, so only URLs, mass mentions and invites are broken."""
    return _clip(list(_broken(_one_line(text))), limit)


# -- internals -----------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return _LINE_BREAK.split(text.translate(_BIDI_CONTROLS))


def _one_line(text: str) -> str:
    return " ".join(text.translate(_BIDI_CONTROLS).split())


def _markdown_tokens(lines: list[str]) -> list[str]:
    """The escaped text as a list of pieces that must not be split when clipping."""
    tokens: list[str] = []
    for number, raw in enumerate(lines):
        if number:
            tokens.append("\n")
        line = _broken(raw)
        start = len(line) - len(line.lstrip())
        tokens.extend(line[:start])
        rest = start
        if line[start : start + 1] in _LINE_START_MARKERS:
            tokens.append("\\" + line[start])
            rest = start + 1
        elif numbered := _NUMBERED_ITEM.match(line, start):
            rest = numbered.end()
            tokens.extend(line[start : rest - 1])
            tokens.append("\\.")
        tokens.extend("\\" + char if char in _ESCAPED else char for char in line[rest:])
    return tokens


def _broken(line: str) -> str:
    """``line`` with a zero-width space wherever a URL separator (``:/``), a mass mention
    (``@everyone``, ``@here``) or an invite host (``discord.gg/``) would start."""
    line = _SCHEME_SEPARATOR.sub(":" + ZWSP, line)
    line = _MASS_MENTION.sub("@" + ZWSP, line)
    return _INVITE_HOST.sub(lambda match: match.group() + ZWSP, line)


def _clip(tokens: list[str], limit: int | None) -> str:
    if limit is None:
        return "".join(tokens)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    total = sum(len(token) for token in tokens)
    if total <= limit:
        return "".join(tokens)
    kept: list[str] = []
    room = limit - len(ELLIPSIS)
    for token in tokens:
        if len(token) > room:
            break
        kept.append(token)
        room -= len(token)
    return "".join(kept).rstrip() + ELLIPSIS
