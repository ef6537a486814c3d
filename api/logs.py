"""Logging of the commands: one format, and no secret in any line.

Libraries log what they are given: libpq, for one, quotes a connection string it cannot parse,
password included, and psycopg's pool logs that once a second while it retries. So every handler
the process logs through gets a `RedactingFilter`, which rewrites each record before it is
written: the password of any URL (`scheme://user:***@host`), any `password=...` of a connection
string, and every configured secret (the database password, the bearer keys, the LLM key) wherever
it appears, tracebacks included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import IO
from urllib.parse import unquote, urlsplit

from citesearch.api.settings import Settings

MASK = "***"
MIN_SECRET_CHARS = 4
"""Shorter secrets are masked only where a URL or `password=` names them (masking every "ab" of every
line would make the log unreadable and tell which two letters the password is)."""
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s'\"]*:)[^\s'\"]*(@)")
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def settings_secrets(settings: Settings) -> list[str]:
    """The secrets a settings object holds: the database password (as written and decoded), the keys."""
    found = [settings.api_key, settings.read_key, settings.llm_api_key]
    if settings.database_url:
        try:
            password = urlsplit(settings.database_url).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return sorted({s for s in found if s}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, arguments and traceback without URL passwords or known secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every password and secret replaced by `***`."""
        text = _URL_PASSWORD.sub(rf"\1{MASK}\2", text)
        text = _CONNINFO_PASSWORD.sub(rf"\1{MASK}", text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def _clean(self, value: object) -> object:
        if value is None or isinstance(value, bool | int | float):
            return value
        text = value if isinstance(value, str) else str(value)
        clean = self.redact(text)
        return value if clean == text else clean

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; rewrite what it would print."""
        if not record.args:
            record.msg = self._clean(record.msg)
        else:  # the arguments one by one (formatters such as uvicorn's access log read them), the format kept
            if isinstance(record.args, Mapping):
                record.args = {k: self._clean(v) for k, v in record.args.items()}
            else:
                record.args = tuple(self._clean(a) for a in record.args)
            try:
                message = record.getMessage()
            except (TypeError, ValueError, KeyError):  # a broken format: logging reports it
                message = None
            if message is not None and self.redact(message) != message:  # in the format, or across arguments
                record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    handlers = [h for lg in loggers for h in lg.handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    return handlers


def protect_logs(secrets: Iterable[str]) -> None:
    """Put a redacting filter on every handler there is now (call again after something adds some)."""
    filt = RedactingFilter(secrets)
    for handler in _handlers():
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(filt)


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """The process's logging: the configured level, one format, on stderr, without secrets."""
    logging.basicConfig(stream=stream or sys.stderr, level=settings.log_level.upper(), format=FORMAT)
    protect_logs(settings_secrets(settings))
