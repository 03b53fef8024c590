"""Readers that turn JSONL, CSV and directories of .html/.md/.txt files into raw records, each
checked as the streams worker will decode it; bad lines come back as `Bad`, numbered, not raised."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from lorafeed.ingest_errors import (
    BadCsvHeader,
    RejectReason,
    UnreadablePath,
    UnsupportedPath,
    reason_for,
)
from schemas import TOPICS, RecordIngested, SchemaError, Topic, decode
from schemas.errors import NotUtf8

RAW_CAP: Final = TOPICS[Topic.RECORDS_RAW].max_message_bytes
DIRECTORY_TYPES: Final = {
    ".html": "text/html", ".htm": "text/html", ".md": "text/markdown", ".txt": "text/plain",
}  # fmt: skip
CSV_REQUIRED: Final = ("record_id", "content")
CSV_OPTIONAL: Final = ("source", "content_type", "op", "occurred_at", "metadata")
SUPPORTED: Final = (
    ".jsonl/.ndjson (one raw record per line), .csv (record_id, content, ...) "
    "or a directory of .html/.htm/.md/.txt files"
)
DETAIL_MAX: Final = 300
_BOM: Final = b"\xef\xbb\xbf"
_ESCAPED_BYTE: Final = re.compile("[\udc80-\udcff]")  # undecodable bytes under surrogateescape


@dataclass(frozen=True, slots=True)
class Ok:
    """A valid record and where it came from (line number, or file ordinal for a directory)."""

    record: RecordIngested
    line_no: int


@dataclass(frozen=True, slots=True)
class Bad:
    """A rejected line (file ordinal for a directory, whose `detail` starts with the path)."""

    line_no: int
    reason: RejectReason
    detail: str


ParsedLine = Ok | Bad


def cut_detail(text: str) -> str:
    """`text` cut to DETAIL_MAX characters, ending in "..." when cut."""
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def _bad(line_no: int, exc: SchemaError, where: str = "") -> Bad:
    return Bad(line_no, reason_for(exc), cut_detail(f"{where}: {exc}" if where else str(exc)))


def _record_from(obj: dict[str, Any], line_no: int, where: str = "") -> ParsedLine:
    """Validate a record built by a reader exactly as the worker decodes it."""
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotUtf8(f"{exc.object[exc.start]!r} does not come from UTF-8 text") from exc
        return Ok(decode(Topic.RECORDS_RAW, data), line_no)
    except SchemaError as exc:
        return _bad(line_no, exc, where)


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()


def _open(path: Path, text: bool = False) -> IO[Any]:
    try:
        if text:  # undecodable bytes survive as lone surrogates and are reported per row
            return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
        return open(path, "rb")
    except OSError as exc:
        raise UnreadablePath(f"cannot open {path}: {exc.strerror or exc}") from exc


def read_jsonl(path: Path) -> Iterator[ParsedLine]:
    """One raw-record JSON object per line; blank lines skipped; each line decoded as the worker
    would. A line over the topic's cap is skipped without being held in memory whole."""
    return _jsonl_lines(_open(path))


def _jsonl_lines(handle: IO[bytes]) -> Iterator[ParsedLine]:
    with handle:
        for line_no, line, size in _capped_lines(handle):
            if line is None:
                yield Bad(line_no, RejectReason.TOO_LARGE,
                          f"line is {size} bytes, the limit is {RAW_CAP}")
                continue
            if line_no == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if not line.strip():
                continue
            try:
                yield Ok(decode(Topic.RECORDS_RAW, line), line_no)
            except SchemaError as exc:
                yield _bad(line_no, exc)


def _capped_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line without its end or None if over the cap, size in bytes)."""
    line_no = 0
    while chunk := _read(handle, RAW_CAP + 1):
        line_no += 1
        if chunk.endswith(b"\n") or len(chunk) <= RAW_CAP:
            line = chunk.rstrip(b"\r\n")
            yield line_no, line, len(line)
            continue
        size = len(chunk)
        while (more := _read(handle, 1 << 20)) and not more.endswith(b"\n"):
            size += len(more)
        yield line_no, None, size + len(more.rstrip(b"\r\n"))


def _read(handle: IO[bytes], limit: int) -> bytes:
    try:
        return handle.readline(limit)
    except OSError as exc:
        raise UnreadablePath(f"reading {handle.name} failed: {exc.strerror or exc}") from exc


def read_csv(path: Path) -> Iterator[ParsedLine]:
    """Rows of a CSV whose header names at least record_id and content (raises BadCsvHeader).

    Optional columns: source (default: the file stem), content_type (text/plain), op (upsert),
    occurred_at (the file's mtime, UTC), metadata (a JSON object); other non-empty cells go into
    metadata. Line numbers are those of each row's first line.
    """
    # The default cap (128 KiB per field) is below the topic's; raising it affects the process.
    csv.field_size_limit(max(csv.field_size_limit(), RAW_CAP))
    handle = _open(path, text=True)
    try:
        reader = csv.reader(handle)
        header = _csv_header(next(reader, None), path)
        defaults = {"schema_version": 1, "op": "upsert", "source": path.stem,
                    "content_type": "text/plain", "occurred_at": _mtime(path)}
    except (csv.Error, OSError) as exc:
        handle.close()
        raise UnreadablePath(f"cannot read the CSV header of {path}: {exc}") from exc
    except BaseException:
        handle.close()
        raise
    return _csv_rows(handle, reader, header, defaults)


def _csv_header(row: list[str] | None, path: Path) -> list[str]:
    if not row:
        raise BadCsvHeader(f"{path} has no header row; required columns: {', '.join(CSV_REQUIRED)}")
    header = [name.strip() for name in row]
    missing = [name for name in CSV_REQUIRED if name not in header]
    if missing:
        raise BadCsvHeader(f"{path}: the header lacks column(s) {', '.join(map(repr, missing))}; "
                           f"found {', '.join(map(repr, header))}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise BadCsvHeader(f"{path}: the header repeats column(s) {', '.join(map(repr, repeated))}")
    return header


def _csv_rows(
    handle: IO[str], reader: Any, header: list[str], defaults: dict[str, Any]
) -> Iterator[ParsedLine]:
    with handle:
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                too_large = "field limit" in str(exc)
                reason = RejectReason.TOO_LARGE if too_large else RejectReason.INVALID_FIELD
                yield Bad(start, reason, f"unreadable CSV row: {exc}")
                continue
            if any(cell.strip() for cell in row):
                yield _csv_record(row, header, defaults, start)


def _csv_record(
    row: list[str], header: list[str], defaults: dict[str, Any], line_no: int
) -> ParsedLine:
    if len(row) != len(header):
        return Bad(line_no, RejectReason.INVALID_FIELD,
                   f"row has {len(row)} fields, the header has {len(header)}")
    obj, extra, metadata = dict(defaults), {}, {}
    for name, cell in zip(header, row, strict=True):
        if escaped := _ESCAPED_BYTE.search(cell):
            byte = ord(escaped.group()) - 0xDC00
            return Bad(line_no, RejectReason.NOT_UTF8,
                       f"column {name!r}: byte 0x{byte:02x} at character {escaped.start()} "
                       "is not valid UTF-8")
        if name == "metadata" and cell.strip():
            try:
                metadata = json.loads(cell)
            except ValueError as exc:
                return Bad(line_no, RejectReason.INVALID_FIELD,
                           cut_detail(f"column 'metadata' is not JSON: {exc} (got {cell[:60]!r})"))
            except RecursionError:  # a nesting bomb in one cell must not stop the whole file
                return Bad(line_no, RejectReason.TOO_LARGE,
                           "column 'metadata' nests JSON too deeply (Python's recursion limit)")
            if not isinstance(metadata, dict):
                detail = f"column 'metadata' must be a JSON object, got {cell[:60]!r}"
                return Bad(line_no, RejectReason.INVALID_FIELD, cut_detail(detail))
        elif name in CSV_REQUIRED or (name in CSV_OPTIONAL and cell):
            obj[name] = cell
        elif cell and name not in CSV_OPTIONAL:
            extra[name] = cell
    obj["metadata"] = {**extra, **metadata}
    return _record_from(obj, line_no)


def read_directory(path: Path) -> Iterator[ParsedLine]:
    """Every non-hidden .html/.htm/.md/.txt file below `path`, in sorted order, as one record
    (record_id: the POSIX path relative to `path`; source: the directory's name). Symlinks that
    leave the directory are refused; symlinked directories inside it are not followed twice."""
    root = path.resolve()
    if not root.is_dir():
        raise UnreadablePath(f"{path} is not a directory")
    source = root.name or "files"
    return (
        _file_record(root, item, ordinal, source)
        for ordinal, item in enumerate(_walk(root, root), start=1)
    )


def _walk(root: Path, folder: Path) -> Iterator[Path | OSError]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        yield exc
        return
    for entry in entries:
        candidate = Path(entry.path)
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, candidate)
        elif entry.is_symlink() and not _inside(root, candidate):
            if candidate.is_dir() or candidate.suffix.lower() in DIRECTORY_TYPES:
                yield candidate
        elif not entry.is_dir() and candidate.suffix.lower() in DIRECTORY_TYPES:
            yield candidate


def _inside(root: Path, link: Path) -> bool:
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _file_record(root: Path, item: Path | OSError, ordinal: int, source: str) -> ParsedLine:
    if isinstance(item, OSError):
        return Bad(ordinal, RejectReason.UNREADABLE, f"{item.filename}: {item.strerror or item}")
    where = item.relative_to(root).as_posix()
    if item.is_symlink() and not _inside(root, item):
        return Bad(ordinal, RejectReason.SYMLINK_OUTSIDE,
                   f"{where}: symlink to {os.readlink(item)} points outside {root}; refused")
    try:
        mode = item.stat().st_mode
    except OSError as exc:
        return Bad(ordinal, RejectReason.UNREADABLE, f"{where}: {exc.strerror or exc}")
    if not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer forever
        return Bad(ordinal, RejectReason.UNREADABLE,
                   f"{where}: not a regular file (a FIFO, socket or device); refused")
    try:
        with open(item, "rb") as handle:
            data = handle.read(RAW_CAP + 1)
            size = os.fstat(handle.fileno()).st_size
        occurred_at = _mtime(item)
    except OSError as exc:
        return Bad(ordinal, RejectReason.UNREADABLE, f"{where}: {exc.strerror or exc}")
    if len(data) > RAW_CAP:
        return Bad(ordinal, RejectReason.TOO_LARGE,
                   f"{where}: file is {max(size, len(data))} bytes, the limit is {RAW_CAP}")
    try:
        content = data.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1]
        return Bad(ordinal, RejectReason.NOT_UTF8,
                   f"{where}: byte {byte!r} at offset {exc.start} is not valid UTF-8")
    obj = {"schema_version": 1, "record_id": where, "op": "upsert", "source": source,
           "content_type": DIRECTORY_TYPES[item.suffix.lower()], "content": content,
           "metadata": {}, "occurred_at": occurred_at}
    return _record_from(obj, ordinal, where)


_FILE_READERS: Final[dict[str, Callable[[Path], Iterator[ParsedLine]]]] = {
    ".jsonl": read_jsonl, ".ndjson": read_jsonl, ".csv": read_csv,
}


def read_path(path: Path) -> Iterator[ParsedLine]:
    """Records from a directory, a JSONL file or a CSV file, by suffix."""
    if path.is_dir():
        return read_directory(path)
    return _file_reader(path)(path)


def _file_reader(path: Path) -> Callable[[Path], Iterator[ParsedLine]]:
    if not path.exists():
        raise UnreadablePath(f"{path}: no such file or directory")
    reader = _FILE_READERS.get(path.suffix.lower())
    if reader is None:
        raise UnsupportedPath(f"{path}: unsupported kind {path.suffix or '(no suffix)'!r}; "
                              f"supported: {SUPPORTED}")
    return reader


def expected_items(path: Path) -> int:
    """The progress total of `ingest_path`: lines of a file, candidate files of a directory."""
    if path.is_dir():
        return sum(1 for _ in _walk(path.resolve(), path.resolve()))
    _file_reader(path)
    lines, last = 0, b"\n"
    with _open(path) as handle:
        while chunk := handle.read(1 << 20):
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    return lines + (last != b"\n")

