"""Raw PII kept out of process logs: a logging filter that redacts what the pseudonymizer would
replace (`[EMAIL]`, `[PHONE]`, ...) in every record, percent-encoded text included (an access
log line carries the request's query string as sent). Services install it once in `main()`."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import unquote

from lorafeed.privacy import redact

# Loggers that do not propagate to the root (uvicorn configures its own handlers for them).
_OWN_HANDLERS = ("uvicorn.access", "uvicorn.error")


def _infrastructure(kind: str, raw: str) -> bool:
    """Loopback, private and unspecified addresses name machines, not people: kept."""
    if kind not in ("ipv4", "ipv6"):
        return False
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def _clean(value: object) -> object:
    if not isinstance(value, str) or not value:
        return value
    decoded = unquote(value) if "%" in value else value
    redacted = redact(decoded, keep=_infrastructure)
    return value if redacted == decoded else redacted


class PiiRedactingFilter(logging.Filter):
    """Redacts raw PII from a record's message and arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(arg) for key, arg in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = _clean(record.msg)
        if record.exc_info and not record.exc_text:  # formatted once here, cached for handlers
            record.exc_text = str(_clean(logging.Formatter().formatException(record.exc_info)))
        return True


def install_log_redaction() -> None:
    """Add the filter to the root logger's handlers and to uvicorn's own loggers (call after
    logging is configured; uvicorn keeps logger filters when it configures its handlers)."""
    redacting = PiiRedactingFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)
    for name in _OWN_HANDLERS:
        logging.getLogger(name).addFilter(redacting)
