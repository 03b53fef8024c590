"""Seeded generator of support-knowledge records (English and Chinese) with ground truth.

Tests, benchmarks and the demo share it. Pages of the fictional Qilin Home (麒麟智家) help
centre are built from templates with slots and ``{a|b}`` alternatives, rendered as plain text,
Markdown or noisy HTML, with planted PII (e-mail, mainland mobile numbers, GB 11643 resident
ID numbers, Luhn-valid card numbers, IPv4), exact and near duplicates and labelled queries.
The same arguments always give the same corpus.
"""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from lorafeed.corpus_pii import PII_MAKERS
from lorafeed.corpus_templates import (
    API_ERRORS,
    CITIES,
    EN_FILLER,
    ENTITIES,
    GENERAL,
    HEADINGS,
    HTML_COMMENTS,
    HTML_NOISE,
    HTML_PAGE,
    PII_SENTENCES,
    PLANS,
    PRODUCTS,
    QUERIES,
    SOURCES,
    TITLES,
    TOPICS,
    ZH_FILLER,
)

Lang = Literal["en", "zh"]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_MIN_UNITS = 80  # words (en) or non-space characters (zh) per page, at least
_SENTENCE_UNITS = 430  # body sentences stop here; headings and PII keep pages under 600
_NEAR_DUP_MIN_UNITS = 300  # near-duplicates copy pages this long: one edit keeps J >= 0.96
_SPIN = re.compile(r"\{([^{}]*\|[^{}]*)\}")


@dataclass(frozen=True)
class LabelledQuery:
    """A search query and the records that answer it (same language, topic and subject)."""

    text: str
    lang: Lang
    relevant_record_ids: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    """Records in stream order (each duplicate after its original) and their ground truth.

    exact_duplicates: duplicate id -> original id (same content, or whitespace-only changes).
    near_duplicates: (original id, near-duplicate id); bodies of 300+ units (if enough pages
        are that long) differing in one word or character: 5-shingle Jaccard about 0.96+.
    pii: record id -> raw PII strings planted in its content, exactly as written there.
    languages: record id -> "en" | "zh". bodies: record id -> the page's own text as plain
        text (title, headings, paragraphs; HTML pages add nav/footer boilerplate around it).
    queries: labelled queries; relevant ids include duplicates, which a deduplicating
        pipeline indexes under their original's id.
    """

    seed: int
    records: list[dict[str, Any]]
    exact_duplicates: dict[str, str] = field(default_factory=dict)
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)
    pii: dict[str, list[str]] = field(default_factory=dict)
    languages: dict[str, Lang] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)
    queries: list[LabelledQuery] = field(default_factory=list)


@dataclass(frozen=True)
class _Page:
    lang: Lang
    topic: str
    subject: str  # product key, or the error code for API pages
    title: str
    sections: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]  # heading, paragraphs
    pii: tuple[str, ...]
    content_type: str
    wrapper_seed: int
    source: str


def generate_corpus(
    n: int,
    *,
    seed: int = 0,
    zh_ratio: float = 0.4,
    html_ratio: float = 0.5,
    exact_dup_ratio: float = 0.05,
    near_dup_ratio: float = 0.05,
    pii_ratio: float = 0.3,
    id_prefix: str = "kb",
) -> Corpus:
    """``n`` raw records (DESIGN.md's JSON shape) with ground truth, deterministic in ``seed``.

    Duplicate ratios are met exactly up to rounding. Languages, HTML and PII are dealt out
    as exact quotas over the originals and duplicates inherit them, so their overall shares
    land within a few percent of the ratios.
    """
    _validate(n, zh_ratio, html_ratio, exact_dup_ratio, near_dup_ratio, pii_ratio)
    rng = random.Random(f"lorafeed-corpus:{seed}")
    n_near = min(round(n * near_dup_ratio), n // 2)
    n_exact = min(round(n * exact_dup_ratio), (n - 2 * n_near) // 2)  # each copies an original
    n_orig = n - n_exact - n_near
    langs = _quota(rng, n_orig, zh_ratio, "zh", "en")
    htmls = _quota(rng, n_orig, html_ratio, True, False)
    piis = _quota(rng, n_orig, pii_ratio, True, False)
    pages = [_page(rng, langs[i], htmls[i], piis[i]) for i in range(n_orig)]
    sizes = [_units(_plain(p)) for p in pages]
    long_ones = [i for i, size in enumerate(sizes) if size >= _NEAR_DUP_MIN_UNITS]
    if len(long_ones) < n_near:
        long_ones = sorted(range(n_orig), key=lambda i: -sizes[i])[:n_near]
    near_src = rng.sample(long_ones, n_near)
    taken = set(near_src)
    rest = [i for i in range(n_orig) if i not in taken]
    exact_src = rng.sample(rest, n_exact)
    entries: list[tuple[float, _Page, str, int]] = [(i, p, "orig", i) for i, p in enumerate(pages)]
    for kind, sources in (("exact", exact_src), ("near", near_src)):
        for src in sources:
            copy = pages[src] if kind == "exact" else _edit(rng, pages[src])
            copy = replace(copy, source=rng.choice(SOURCES))
            entries.append((rng.uniform(src + 0.01, n_orig), copy, kind, src))
    entries.sort(key=lambda e: e[0])
    return _assemble(rng, seed, id_prefix, entries)


def write_jsonl(corpus: Corpus, path: str | Path) -> int:
    """Write ``corpus.records`` as UTF-8 JSON Lines (one record a line); return the count."""
    with Path(path).open("w", encoding="utf-8") as out:
        for record in corpus.records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(corpus.records)


def _validate(n: int, *ratios: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    names = ("zh_ratio", "html_ratio", "exact_dup_ratio", "near_dup_ratio", "pii_ratio")
    for name, value in zip(names, ratios, strict=True):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if ratios[2] + ratios[3] > 0.5:
        raise ValueError(
            f"exact_dup_ratio + near_dup_ratio must be <= 0.5, got {ratios[2] + ratios[3]!r}"
        )


def _quota(rng: random.Random, n: int, ratio: float, yes: Any, no: Any) -> list[Any]:
    k = round(n * ratio)
    values = [yes] * k + [no] * (n - k)
    rng.shuffle(values)
    return values


def _spin(rng: random.Random, template: str, slots: dict[str, str]) -> str:
    """Resolve ``{a|b}`` alternatives at random, then fill ``{slot}`` names."""
    text = _SPIN.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    return text.format_map(slots)


def _slots(rng: random.Random, lang: Lang, topic: str, subject: str) -> dict[str, str]:
    """Page-level slot values (counts vary per sentence through ``_fresh``)."""
    k = 0 if lang == "en" else 1
    product = rng.choice(tuple(PRODUCTS)) if topic == "api" else subject
    code, meaning = (subject, API_ERRORS[subject][k]) if topic == "api" else ("", "")
    return {
        "product": PRODUCTS[product][k], "code": code, "meaning": meaning,
        "order": f"QL{rng.randint(2023, 2024)}{rng.randint(10**7, 10**8 - 1)}",
        "days": str(rng.choice((3, 5, 7, 10, 14, 15, 30))),
        "amount": f"¥{rng.randint(2, 400) * 10}",
        "version": f"{rng.randint(1, 4)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}",
        "plan": rng.choice(PLANS[lang]),
        "city": rng.choice(CITIES[lang]),
    }


def _fresh(rng: random.Random, slots: dict[str, str]) -> dict[str, str]:
    counts = {"count": str(rng.randint(2, 60)), "hours": str(rng.randint(12, 22))}
    return {**slots, **counts, "percent": str(rng.choice((5, 8, 10, 12, 15, 20)))}


def _page(rng: random.Random, lang: Lang, is_html: bool, with_pii: bool) -> _Page:
    topic = rng.choice(tuple(TOPICS))
    subject = rng.choice(tuple(API_ERRORS) if topic == "api" else tuple(PRODUCTS))
    slots = _slots(rng, lang, topic, subject)
    title = _spin(rng, TITLES[topic][lang], slots)
    target = int(_MIN_UNITS + (_SENTENCE_UNITS - _MIN_UNITS) * rng.random() ** 1.5)
    sentences = _sentences(rng, lang, topic, slots, target - _units(title))
    paragraphs: list[tuple[str, ...]] = []
    while sentences:
        size = rng.randint(2, 5)
        paragraphs.append(tuple(sentences[:size]))
        sentences = sentences[size:]
    k = min(len(HEADINGS[lang]), max(1, round(len(paragraphs) / 2)))
    headings = [HEADINGS[lang][0], *rng.sample(HEADINGS[lang][1:], k - 1)]
    sections = [(_spin(rng, headings[j], slots),
                 paragraphs[j * len(paragraphs) // k : (j + 1) * len(paragraphs) // k])
                for j in range(k)]
    pii = _plant_pii(rng, lang, sections) if with_pii else ()
    content_type = "text/html" if is_html else rng.choice(("text/plain", "text/markdown"))
    frozen = tuple((h, tuple(p)) for h, p in sections)
    return _Page(lang, topic, subject, title, frozen, pii, content_type,
                 rng.getrandbits(32), rng.choice(SOURCES))


def _sentences(
    rng: random.Random, lang: Lang, topic: str, slots: dict[str, str], target: int
) -> list[str]:
    """Body sentences up to ``target`` units: the topic's templates mixed with general ones
    first, then other topics' (long pages wander), each template used once per round."""
    own = rng.sample(TOPICS[topic][lang], len(TOPICS[topic][lang]))
    general = rng.sample(GENERAL[lang], len(GENERAL[lang]))
    mixed = [t for pair in zip(own, general, strict=False) for t in pair]
    mixed += own[len(general) :] + general[len(own) :]
    others = [t for name, pools in TOPICS.items() if name != topic for t in pools[lang]]
    order = mixed + rng.sample(others, len(others))
    sentences: list[str] = []
    units = 0
    while units < target:
        sentence = _spin(rng, order[len(sentences) % len(order)], _fresh(rng, slots))
        sentences.append(sentence)
        units += _units(sentence)
    return sentences


def _plant_pii(
    rng: random.Random, lang: Lang, sections: list[tuple[str, list[tuple[str, ...]]]]
) -> tuple[str, ...]:
    """Insert one to three PII sentences into random paragraphs; return the raw values."""
    planted: list[str] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(tuple(PII_SENTENCES))
        value = PII_MAKERS[kind](rng)
        sentence = rng.choice(PII_SENTENCES[kind][lang]).format(v=value)
        paragraphs = rng.choice([s for s in sections if s[1]])[1]
        at = rng.randrange(len(paragraphs))
        para = list(paragraphs[at])
        para.insert(rng.randint(0, len(para)), sentence)
        paragraphs[at] = tuple(para)
        planted.append(value)
    return tuple(planted)


def _edit(rng: random.Random, page: _Page) -> _Page:
    """A near-duplicate: one word (en) or character (zh) of a non-PII sentence changed."""
    sections = [(h, [list(p) for p in paras]) for h, paras in page.sections]
    slots = [(s, p, i) for s, (_, paras) in enumerate(sections)
             for p, para in enumerate(paras) for i, sentence in enumerate(para)
             if not any(v in sentence for v in page.pii)]
    s, p, i = rng.choice(slots)
    sections[s][1][p][i] = _mutate(rng, page.lang, sections[s][1][p][i])
    frozen = tuple((h, tuple(tuple(p) for p in paras)) for h, paras in sections)
    return replace(page, sections=frozen)


def _mutate(rng: random.Random, lang: Lang, sentence: str) -> str:
    if lang == "zh":
        spots = [i for i, c in enumerate(sentence) if "\u4e00" <= c <= "\u9fff"]
        at = rng.choice(spots)
        new = rng.choice([c for c in ZH_FILLER if c != sentence[at]])
        return sentence[:at] + new + sentence[at + 1 :]
    words = sentence.split(" ")
    spots = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 3] or [0]
    at = rng.choice(spots)
    words[at] = rng.choice([w for w in EN_FILLER if w != words[at].lower()])
    return " ".join(words)


def _units(text: str) -> int:
    """Page length unit: words for English, non-space characters for Chinese."""
    if any("\u4e00" <= c <= "\u9fff" for c in text):
        return sum(1 for c in text if not c.isspace())
    return len(text.split())


def _joiner(lang: Lang) -> str:
    return " " if lang == "en" else ""


def _plain(page: _Page) -> str:
    parts = [page.title]
    for heading, paragraphs in page.sections:
        parts.append(heading)
        parts.extend(_joiner(page.lang).join(p) for p in paragraphs)
    return "\n\n".join(parts)


def _markdown(page: _Page) -> str:
    parts = [f"# {page.title}"]
    for heading, paragraphs in page.sections:
        parts.append(f"## {heading}")
        parts.extend(_joiner(page.lang).join(p) for p in paragraphs)
    return "\n\n".join(parts)


def _html(page: _Page) -> str:
    """The page inside a noisy site template (scripts, styles, nav, footer, comments)."""
    rng = random.Random(page.wrapper_seed)
    body = [f"<h1>{_escape(rng, page.title)}</h1>"]
    for heading, paragraphs in page.sections:
        body.append(f"<h2>{_escape(rng, heading)}</h2>")
        if len(paragraphs) > 1 and rng.random() < 0.3:
            items = "".join(f"<li>{_escape(rng, _joiner(page.lang).join(p))}</li>"
                            for p in paragraphs)
            body.append(f"<ul>{items}</ul>")
            continue
        body.extend(f"<p>{_escape(rng, _joiner(page.lang).join(p))}</p>" for p in paragraphs)
    noise = HTML_NOISE[page.lang]
    return HTML_PAGE.format(
        lang="zh-CN" if page.lang == "zh" else "en", title=html.escape(page.title),
        nav=noise["nav"], comment=rng.choice(HTML_COMMENTS), main="\n".join(body),
        footer=noise["footer"], build=rng.getrandbits(24),
    )


def _escape(rng: random.Random, text: str) -> str:
    """HTML-escape, writing some characters as named or numeric entities."""
    out = html.escape(text, quote=False)
    for char, entity in ENTITIES.items():
        out = out.replace(char, entity)
    chars = [f"&#{ord(c)};" if "\u4e00" <= c <= "\u9fff" and rng.random() < 0.02 else c
             for c in out]
    return "".join(chars).replace(". ", ".&nbsp;", 1)


def _render(page: _Page, reformat: bool) -> str:
    if page.content_type == "text/html":
        return _html(page)
    text = _markdown(page) if page.content_type == "text/markdown" else _plain(page)
    return text.replace("\n", " \r\n").replace(". ", ".  ") if reformat else text


def _assemble(
    rng: random.Random, seed: int, prefix: str, entries: Sequence[tuple[float, _Page, str, int]]
) -> Corpus:
    corpus = Corpus(seed=seed, records=[])
    ids = {e[3]: f"{prefix}-{seed}-{pos:06d}" for pos, e in enumerate(entries) if e[2] == "orig"}
    moment = _EPOCH + timedelta(seconds=rng.randint(0, 180 * 86400))
    for pos, (_, page, kind, src) in enumerate(entries):
        record_id = f"{prefix}-{seed}-{pos:06d}"
        moment += timedelta(seconds=rng.randint(1, 900))
        content = _render(page, reformat=kind == "exact" and rng.random() < 0.5)
        corpus.records.append(_record(record_id, page, content, moment))
        corpus.pii[record_id] = list(page.pii)
        corpus.languages[record_id] = page.lang
        corpus.bodies[record_id] = _plain(page)
        if kind == "exact":
            corpus.exact_duplicates[record_id] = ids[src]
        elif kind == "near":
            corpus.near_duplicates.append((ids[src], record_id))
    corpus.queries.extend(_queries(rng, corpus, entries))
    return corpus


def _record(record_id: str, page: _Page, content: str, moment: datetime) -> dict[str, Any]:
    slug = f"{page.topic}-{page.subject}".lower()
    metadata = {"title": page.title, "locale": "zh-CN" if page.lang == "zh" else "en-US",
                "category": page.topic, "tags": [page.topic, page.subject.lower()],
                "url": f"https://help.qilin.example/{page.lang}/{slug}/{record_id}"}
    return {
        "schema_version": 1, "record_id": record_id, "op": "upsert", "source": page.source,
        "content_type": page.content_type, "content": content, "metadata": metadata,
        "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _queries(
    rng: random.Random, corpus: Corpus, entries: Sequence[tuple[float, _Page, str, int]]
) -> list[LabelledQuery]:
    """One query per (language, topic, subject) present, relevant = all records on it."""
    groups: dict[tuple[Lang, str, str], list[str]] = {}
    for record, (_, page, _, _) in zip(corpus.records, entries, strict=True):
        groups.setdefault((page.lang, page.topic, page.subject), []).append(record["record_id"])
    queries = []
    for (lang, topic, subject), ids in sorted(groups.items()):
        slots = _slots(rng, lang, topic, subject)
        text = _spin(rng, rng.choice(QUERIES[topic][lang]), slots)
        queries.append(LabelledQuery(text, lang, tuple(ids)))
    return queries
