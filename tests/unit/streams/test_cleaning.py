"""Cleaning: HTML and Markdown to text, nesting bombs, mojibake, NFKC, whitespace, dispatch."""

from __future__ import annotations

import re

import ftfy.bad_codecs  # noqa: F401  (registers "sloppy-windows-1252" for building mojibake)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dead_letters import DeadLetterReason
from streams.cleaning import (
    CONTENT_TYPES,
    CleaningError,
    HtmlTooDeep,
    UnsupportedContentType,
    clean,
    html_to_text,
    markdown_to_text,
    normalize_text,
)

PAGE = """<!DOCTYPE html><html><head><title>Help  Center</title>
<style>p { color: red }</style><script>var s = "<div>secret script</div>";</script></head>
<body><!-- a secret comment --><h1>Reset &amp; recover</h1>
<div>  Hello
   world <b>bold</b><i>italic</i></div><p>Line one<br>Line two</p>
<noscript>enable javascript</noscript><template><p>template text</p></template>
<p>&lt;tag&gt; &copy; &#x4e2d;&#25991; caf&eacute;</p></body></html>"""


def test_page_keeps_the_text_a_reader_sees() -> None:
    assert html_to_text(PAGE) == (
        "Help Center\n\nReset & recover\n\nHello world bolditalic\n\nLine one\nLine two\n\n"
        "<tag> © 中文 café"
    )


@pytest.mark.parametrize(
    "hidden", ["secret script", "color: red", "a secret comment", "enable javascript", "template"]
)
def test_scripts_styles_comments_noscript_and_templates_are_dropped(hidden: str) -> None:
    assert hidden not in html_to_text(PAGE)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("<div>a</div><div>b</div>text", "a\nb\ntext"),
        ("a<br>b<br><br>c", "a\nb\n\nc"),
        ("<h2>Title</h2>body", "Title\n\nbody"),
        ("<p>  Hello\n   world  </p>", "Hello world"),
        ("<span>in</span><span>line</span> <em>runs</em>", "inline runs"),
        ("<blockquote>quoted</blockquote><section>part</section>", "quoted\n\npart"),
        (
            "<table><tr><th>Name</th><th>Qty</th></tr><tr><td>Apple</td><td>3</td></tr></table>",
            "Name\tQty\nApple\t3",
        ),
        (
            "<ul><li>one<ul><li>nested a</li><li>nested b</li></ul></li><li>two</li></ul>",
            "one\nnested a\nnested b\ntwo",
        ),
        ("<ol><li>first<li>second</ol>", "first\nsecond"),
        (
            "<pre>def f():\n    return 1\n\nx = 2</pre>after",
            "def f():\n    return 1\n\nx = 2\n\nafter",
        ),
        ("<p>5&nbsp;pm &quot;ok&quot; &#39;x&#39; &unknown;</p>", "5\xa0pm \"ok\" 'x' &unknown;"),
    ],
)
def test_block_structure_becomes_line_breaks(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    "unit", ["<div>", "<b>", "<a href='x'>", "<div/>", "<span><div></span>", "<svg><g>"]
)
def test_a_100k_deep_bomb_is_refused_before_parsing(unit: str) -> None:
    with pytest.raises(HtmlTooDeep, match="the limit is 256") as caught:
        html_to_text(unit * 100_000)
    assert caught.value.reason is DeadLetterReason.HTML_TOO_DEEP
    with pytest.raises(HtmlTooDeep):
        clean(unit * 100_000 + "text", "text/html")


def test_max_depth_is_the_limit() -> None:
    nested = "<div>" * 10 + "deep" + "</div>" * 10
    assert html_to_text(nested, max_depth=10) == "deep"
    with pytest.raises(HtmlTooDeep, match="at least 11 elements deep, the limit is 10"):
        html_to_text(f"<div>{nested}</div>", max_depth=10)
    with pytest.raises(ValueError, match="max_depth must be >= 1, got 0"):
        html_to_text("x", max_depth=0)


@pytest.mark.parametrize(
    "html",
    [
        "<ul>" + "<li>item" * 2_000 + "</ul>",  # end tags are optional: siblings, not nesting
        "<p>para" * 2_000,
        "<table>" + "<tr><td>x" * 2_000 + "</table>",
        "<svg>" + "<path d='M0 0'/>" * 2_000 + "</svg>",  # self-closed in SVG
        "<script>" + "document.write('<div>');" * 2_000 + "</script><p>ok</p>",
        "<!--" + "<div>" * 2_000 + "-->",
        "<div></div>" * 2_000,
    ],
)
def test_long_flat_documents_are_not_mistaken_for_bombs(html: str) -> None:
    html_to_text(html)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<div><p>unclosed <b>bold <i>both</div> tail", "unclosed bold both\n\ntail"),
        ("<<<>>> a < b > c", "<<<>>> a < b > c"),
        ("<p", ""),
        ("</p></div>stray ends", "stray ends"),
        ("before<!-- never closed <p>hidden</p>", "before"),
        ("<script>never closed <p>hidden</p>", ""),
        ("<b>x<p>y</b>z</p>", "x\n\nyz"),
        ("", ""),
    ],
)
def test_malformed_html_does_not_crash(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_binary_junk_in_html_is_handled() -> None:
    junk = bytes(range(256)).decode("latin-1") + "<p>ok</p>\x00\ud800\udfff\ufffe"
    assert "ok" in html_to_text(junk)
    cleaned = clean(junk, "text/html")
    assert "ok" in cleaned
    assert not any(c in cleaned for c in "\x00\x01\x1b\x7f\x9f\ud800\ufffe")


def test_markdown_to_text() -> None:
    md = (
        "# Title\n\nSome *emphasis* and **strong** and `inline code`.\n\n"
        "[link text](https://example.com/hidden) and <https://shown.example.org>\n\n"
        "- one\n- two\n  - nested\n\n"
        "```python\ndef f():\n    return 1\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>alert(1)</script>\n\n> 引用 quote"
    )
    assert markdown_to_text(md) == (
        "Title\n\nSome emphasis and strong and inline code.\n\n"
        "link text and https://shown.example.org\n\none\ntwo\nnested\n\n"
        "def f():\n    return 1\n\na\tb\n1\t2\n\n引用 quote"
    )


def test_deep_markdown_is_handled() -> None:
    assert markdown_to_text("> " * 10 + "deep") == "deep"
    # Past markdown-it's nesting limit the content is dropped, quickly and without an error.
    assert isinstance(markdown_to_text(">" * 100_000 + " deep"), str)
    assert isinstance(markdown_to_text("- " * 5_000 + "x"), str)


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("cafÃ© naÃ¯ve", "café naïve"),
        ("â€œquotedâ€\x9d â€“ done", "“quoted” – done"),
        ("æ\x88\x91ç\x88±ä½\xa0", "我爱你"),  # UTF-8 read as Latin-1
        ("我爱你，请联系客服。".encode().decode("sloppy-windows-1252"), "我爱你,请联系客服。"),
        ("退款需要5至7个工作日".encode().decode("latin-1"), "退款需要5至7个工作日"),
    ],
)
def test_mojibake_is_repaired(broken: str, fixed: str) -> None:
    assert normalize_text(broken) == fixed


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("ＡＢＣ１２３", "ABC123"),
        ("中文\u3000空格", "中文 空格"),
        ("ﬁle №5", "file No5"),
        ("a\r\nb\rc\u2028d", "a\nb\nc\nd"),
        ("x\x00y\x07z\x1b[31mred\x1b[0m", "xyzred"),
        ("zero\u200bwidth\ufeff and soft\u00adhyphen", "zerowidth and softhyphen"),
        ("a   b \t c\t\td   ", "a b\tc\td"),
        ("  indented line\n    more", "  indented line\n    more"),
        ("\n\n\ntop\n\n\n\n\nbottom\n\n", "top\n\nbottom"),
        ("para\n\npara", "para\n\npara"),
        ("tab\tkept\nnew line kept", "tab\tkept\nnew line kept"),
        ("“中文引号”和‘单引号’", "“中文引号”和‘单引号’"),
    ],
)
def test_normalize_text(raw: str, normalized: str) -> None:
    assert normalize_text(raw) == normalized


def test_clean_dispatches_on_content_type() -> None:
    assert clean("<p>Ｈｉ &amp; 你好</p>", "text/html") == "Hi & 你好"
    assert clean("<p>Ｈｉ</p>", "text/html; charset=utf-8") == "Hi"
    assert clean("**Ｈｉ** [x](http://u)", "text/markdown") == "Hi x"
    assert clean("<p>kept as text</p>\r\n", "text/plain") == "<p>kept as text</p>"


def test_unknown_content_type_is_named() -> None:
    with pytest.raises(UnsupportedContentType, match="'application/pdf' is not one of") as caught:
        clean("%PDF", "application/pdf")
    assert isinstance(caught.value, CleaningError)
    assert caught.value.reason is DeadLetterReason.INVALID_FIELD


HTML_BITS = [
    "<div>", "</div>", "<p>", "<!--", "-->", "<script>", "</script>", "<pre>", "</pre>",
    "<br/>", "<svg>", "<path/>", "<table><tr><td>", "&amp;", "&#0;", "&#xD800;", "&#1;",
    "text", "中文", "\x00", "\ud800", "<", ">", "\n", "```", "# ", "> ", "- ", "[a](b)", "*",
]
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
any_text = st.text(alphabet=st.characters(exclude_categories=()))
markup = st.lists(st.one_of(st.sampled_from(HTML_BITS), any_text), max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.one_of(any_text, markup), st.sampled_from(CONTENT_TYPES))
def test_clean_raises_nothing_but_cleaning_error(content: str, content_type: str) -> None:
    try:
        cleaned = clean(content, content_type)
    except CleaningError:
        return
    assert not CONTROLS.search(cleaned)
