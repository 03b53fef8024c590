"""Record cleaning: HTML and Markdown to plain text, then Unicode and whitespace normalization.

Pure functions the records agent calls before pseudonymization. A record that cannot be cleaned
raises a `CleaningError` whose `reason` is what its `records.dlq` entry states.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

import ftfy
from ftfy.badness import is_bad
from markdown_it import MarkdownIt
from selectolax.lexbor import LexborHTMLParser, LexborNode

from schemas.dead_letters import DeadLetterReason

CONTENT_TYPES: Final = ("text/plain", "text/html", "text/markdown")
DEFAULT_MAX_DEPTH: Final = 256


def _names(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# Rendering: elements whose content is never text for a reader; newlines that blocks need
# around them (2: a paragraph, 1: a line). The walk writes breaks as NUL-led markers (the
# parser drops NUL from text, so no text can fake one) and resolves them at the end.
_SKIPPED: Final = frozenset({"script", "style", "noscript", "template"})
_BREAKS: Final = {
    **dict.fromkeys(
        _names(
            "p h1 h2 h3 h4 h5 h6 pre blockquote table section article header footer aside nav"
            " main figure figcaption hr address details form fieldset dl"
        ),
        "\x002",
    ),
    **dict.fromkeys(
        _names("div li ul ol dt dd tr title caption summary option legend menu center"), "\x001"
    ),
}
_AFTER: Final = {**_BREAKS, "td": "\x00t", "th": "\x00t"}
_PREFORMATTED: Final = frozenset({"pre", "textarea", "listing", "plaintext"})
_PRE_SPACE: Final = str.maketrans({" ": "\x00s", "\t": "\x00t", "\n": "\x00n", "\r": "\x00n"})
_HTML_SPACE: Final = re.compile(r"[ \t\n\r\f]+")
_MARKER_RUN: Final = re.compile(r" ?(?:\x00[12n] ?)+")
_MARKERS: Final = {"\x00s": " ", "\x00t": "\t"}
_SURROGATES: Final = re.compile(r"[\ud800-\udfff]")

# Depth pre-scan: one linear pass over tags, refusing a nesting bomb before parsing. Comments and
# raw-text elements run to their end, or to the end of the input when unclosed (as in a parser).
_TAG: Final = re.compile(
    r"<!--(?:.*?-->|.*)|<(script|style|textarea|title|xmp|iframe|noembed|noframes)\b"
    r"(?:[^<>]*>(?:.*?</\1[\s/>]|.*)|[^<>]*)|<plaintext.*|<(/?)([A-Za-z][^\s/<>]*)([^<>]*)",
    re.DOTALL | re.IGNORECASE,
)
_VOID: Final = _names(
    "area base br col embed hr img input link meta param source track wbr keygen frame"
)
# Elements whose end tag is optional: the parser closes them itself (a new <li> closes the
# open one), so they cannot nest without a counted element between them.
_OPTIONAL_END: Final = _names(
    "p li dt dd tr td th thead tbody tfoot option optgroup rb rt rtc rp colgroup caption"
    " html head body"
)
_FOREIGN: Final = frozenset({"svg", "math"})

_MARKDOWN: Final = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_FTFY: Final = ftfy.TextFixerConfig(
    unescape_html=False,  # entities were decoded by the HTML parser, or are literal text
    uncurl_quotes=False,  # keep “ ” and ‘ ’ as written (Chinese text uses them)
    normalization=None,  # NFKC follows, for every line
    explain=False,
)
# UTF-8 read as Latin-1, Windows-125x, MacRoman or CP437 turns every multi-byte character into
# two or more of these; a line without such a pair cannot be mojibake, so ftfy's (slow)
# detector only sees lines with one.
_MOJIBAKE_HINT: Final = re.compile(
    "[\x80-\u02ff\u0370-\u04ff\u2000-\u20cf\u2100-\u23ff\u2500-\u25ff\uf8ff\ufb01\ufb02\ufffd]{2}"
)
_LINE_BREAKS: Final = re.compile("\r\n?|[\v\f\u2028\u2029]")
_TERMINAL_ESCAPES: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# C0/C1 controls (except \t and \n), soft hyphen, zero-width space, bidi and other invisible
# format characters, BOM and noncharacters; ZWJ/ZWNJ stay (emoji and some scripts need them).
_INVISIBLE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ufffe\uffff]"
)
_TRAILING_SPACE: Final = re.compile(r"[ \t]+$", re.MULTILINE)
_INNER_TAB: Final = re.compile(r"(?<=\S) *\t[ \t]*")
_INNER_SPACES: Final = re.compile(r"(?<=\S) {2,}")
_BLANK_LINES: Final = re.compile(r"\n{3,}")


class CleaningError(ValueError):
    """Base of every cleaning failure; `reason` is the machine-readable DLQ reason."""

    reason: DeadLetterReason = DeadLetterReason.PROCESSING_ERROR


class HtmlTooDeep(CleaningError):
    """The HTML nests elements deeper than allowed (a nesting bomb); it was not parsed."""

    reason = DeadLetterReason.HTML_TOO_DEEP


class UnsupportedContentType(CleaningError):
    """The record's content type is not one that `clean` handles."""

    reason = DeadLetterReason.INVALID_FIELD


def clean(content: str, content_type: str) -> str:
    """Plain, normalized text of a record's content, per its `content_type` (params ignored).

    Raises `UnsupportedContentType` for a type other than `CONTENT_TYPES`, `HtmlTooDeep` for a
    nesting bomb.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "text/html":
        content = html_to_text(content)
    elif kind == "text/markdown":
        content = markdown_to_text(content)
    elif kind != "text/plain":
        raise UnsupportedContentType(
            f"content_type {content_type!r} is not one of {', '.join(CONTENT_TYPES)}"
        )
    return normalize_text(content)


def html_to_text(html: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """The text a reader sees: block elements on their own lines, cells separated by tabs.

    Scripts, styles, templates and comments are dropped and entities decoded; whitespace is
    collapsed as a browser does, except inside <pre>. Raises `HtmlTooDeep` when elements nest
    deeper than `max_depth`, found by a linear pre-scan before any parsing.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    html = _SURROGATES.sub("\ufffd", html).replace("\x00", "")
    depth = _nesting_depth(html, max_depth)
    if depth > max_depth:
        raise HtmlTooDeep(f"HTML nests at least {depth} elements deep, the limit is {max_depth}")
    root = LexborHTMLParser(html).root
    return "" if root is None else _tidy_whitespace(_render(root))


def markdown_to_text(markdown: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """Markdown (CommonMark, plus tables) as text: code kept, link text kept, URLs dropped."""
    return html_to_text(_MARKDOWN.render(_SURROGATES.sub("\ufffd", markdown)), max_depth=max_depth)


def normalize_text(text: str) -> str:
    """Mojibake repaired (ftfy), NFKC, invisible controls removed, whitespace normalized.

    Whitespace: CRLF and other line breaks become LF, trailing spaces go, runs of spaces (or
    tabs) inside a line become one, indentation stays, more than one blank line become one,
    and blank lines at both ends go.
    """
    text = _LINE_BREAKS.sub("\n", _SURROGATES.sub("\ufffd", text))
    if _MOJIBAKE_HINT.search(text):
        text = "\n".join(_repair_line(line) for line in text.split("\n"))
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", _TERMINAL_ESCAPES.sub("", text))
    return _tidy_whitespace(text)


def _repair_line(line: str) -> str:
    if _MOJIBAKE_HINT.search(line) and is_bad(line):
        return ftfy.fix_text_segment(line, _FTFY)
    return line


def _tidy_whitespace(text: str) -> str:
    text = _TRAILING_SPACE.sub("", text)
    text = _INNER_SPACES.sub(" ", _INNER_TAB.sub("\t", text))
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


def _nesting_depth(html: str, limit: int) -> int:
    """How deep elements nest, counted from tags alone, stopping once past `limit`.

    Each end tag closes at most one open element of its name; void elements, end-optional
    elements and self-closed SVG/MathML elements do not count. This may overestimate a
    browser's depth for odd markup, but never ignores an open tag that the parser nests.
    """
    open_by_name: dict[str, int] = {}
    depth = foreign = 0
    for tag in _TAG.finditer(html):
        closing, name, rest = tag.group(2, 3, 4)
        if name is None:
            continue  # a comment or a raw-text element: nothing nests inside
        name = name.lower()
        if closing:
            if open_by_name.get(name, 0) > 0:
                open_by_name[name] -= 1
                depth -= 1
                foreign -= name in _FOREIGN
        elif name in _VOID or name in _OPTIONAL_END or (foreign and rest.endswith("/")):
            continue
        else:
            open_by_name[name] = open_by_name.get(name, 0) + 1
            depth += 1
            foreign += name in _FOREIGN
            if depth > limit:
                break
    return depth


def _render(root: LexborNode) -> str:
    """Text of the tree with break markers, walked without recursion (trees may be deep)."""
    parts: list[str] = []
    open_elements: list[tuple[LexborNode, str]] = []
    pre_depth = 0
    node: LexborNode | None = root
    while node is not None:
        tag = node.tag or ""
        if tag == "-text":
            text = node.text_content or ""
            parts.append(text.translate(_PRE_SPACE) if pre_depth else text)
        elif tag not in _SKIPPED and tag[:1] != "-":  # "-comment", "-doctype"
            parts.append(_BREAKS.get(tag, "\x00n" if tag == "br" else ""))
            child = node.child
            if child is not None:
                pre_depth += tag in _PREFORMATTED
                open_elements.append((node, tag))
                node = child
                continue
            parts.append(_AFTER.get(tag, ""))
        following = node.next if node is not root else None
        while following is None and open_elements:
            node, tag = open_elements.pop()
            pre_depth -= tag in _PREFORMATTED
            parts.append(_AFTER.get(tag, ""))
            following = node.next if node is not root else None
        node = following
    return _resolve_markers("".join(parts))


def _resolve_markers(text: str) -> str:
    """Collapse HTML whitespace, then turn each run of break markers into newlines.

    A block asks for at least 1 or 2 newlines where it starts and ends; a <br> or a newline
    inside <pre> adds one.
    """
    text = _HTML_SPACE.sub(" ", text)

    def newlines(run: re.Match[str]) -> str:
        count = 0
        for kind in run.group().replace(" ", "")[1::2]:
            count = count + 1 if kind == "n" else max(count, int(kind))
        return "\n" * count

    text = _MARKER_RUN.sub(newlines, text)
    return re.sub("\x00[st]", lambda m: _MARKERS[m.group()], text)
