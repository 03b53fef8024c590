"""Ingest's error hierarchy and the reasons a line, row, file or record is refused, shared by the
readers (`record_readers`) and the producer (`ingest`)."""

from __future__ import annotations

from enum import StrEnum

from schemas import SchemaError


class RejectReason(StrEnum):
    """Why a line, row or file was not sent: the codec's reasons plus the readers' own."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    SCHEMA_VERSION = "schema_version"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    PROCESSING_ERROR = "processing_error"
    SYMLINK_OUTSIDE = "symlink_outside"
    UNREADABLE = "unreadable"


class IngestError(Exception):
    """Base of every ingest failure: a path, header or broker that stops an ingest, or a record
    that `RecordProducer.send` refuses."""


class UnsupportedPath(IngestError):
    """The path is neither a supported file kind nor a directory."""


class UnreadablePath(IngestError):
    """The path does not exist or cannot be opened or read."""


class BadCsvHeader(IngestError):
    """A CSV file has no header, lacks a required column or repeats one."""


class BrokerError(IngestError):
    """The broker cannot be used: unreachable, the topic is missing, or the prefix is illegal."""


class ProducerClosed(IngestError):
    """`send` was called after `close`."""


class InvalidRecord(IngestError):
    """A record the worker would dead-letter; `reason` says why."""

    def __init__(self, message: str, reason: RejectReason) -> None:
        super().__init__(message)
        self.reason = reason


def reason_for(exc: SchemaError) -> RejectReason:
    """The RejectReason matching a codec error; PROCESSING_ERROR for one the readers lack."""
    try:
        return RejectReason(exc.reason.value)
    except ValueError:
        return RejectReason.PROCESSING_ERROR
