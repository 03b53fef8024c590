"""The knowledge base's error hierarchy, and `translated`, which turns pymilvus / gRPC failures
into it; used by `knowledge` and `knowledge_schema`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc  # type: ignore[import-untyped]
from pymilvus.exceptions import (  # type: ignore[import-untyped]
    MilvusException,
    ParamError,
)

_NOT_LOADED = 101
_CONNECT_FAILED = 2
_UNAVAILABLE_GRPC = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class KnowledgeError(RuntimeError):
    """Base of every knowledge-base failure."""


class KnowledgeUnavailable(KnowledgeError):
    """Milvus cannot be reached (refused, timed out): retry later; the input is not at fault."""


class KnowledgeInputError(KnowledgeError, ValueError):
    """A row, id or request is unusable (too long, wrong record, bad filter): do not retry."""


class KnowledgeSchemaError(KnowledgeError):
    """The collection exists with a schema this configuration cannot use (e.g. another dim)."""


def is_not_loaded(exc: MilvusException) -> bool:
    message = str(exc.message).lower()
    return exc.code == _NOT_LOADED or "not loaded" in message or "released" in message


def is_unavailable(exc: BaseException) -> bool:
    """A connection-level failure (server down, GOAWAY, timeout), not a bad request."""
    if isinstance(exc, grpc.RpcError):
        return exc.code() in _UNAVAILABLE_GRPC
    if isinstance(exc, MilvusException):
        message = str(exc.message).lower()
        return (exc.code == _CONNECT_FAILED or exc.code in _UNAVAILABLE_GRPC
                or "unavailable" in message or "deadline" in message or "timeout" in message)
    return isinstance(exc, ConnectionError | TimeoutError)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn pymilvus / gRPC errors into `KnowledgeError` subclasses that say what failed."""
    try:
        yield
    except KnowledgeError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise KnowledgeUnavailable(f"{what}: Milvus is unavailable: {exc}") from exc
        if isinstance(exc, ParamError) or getattr(exc, "is_input_error", False):
            raise KnowledgeInputError(f"{what}: rejected by Milvus: {exc}") from exc
        if isinstance(exc, MilvusException):
            raise KnowledgeError(f"{what} failed: {exc}") from exc
        raise
