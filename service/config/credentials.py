"""Credentials in URLs: taken from the environment (`${NAME}` in a site file), never shown in a message.

A site file is documentation of the building and is copied, reviewed and kept with drawings; a
DingTalk token or an SMTP password in it would travel with it. So a notification URL names the
variable instead (`...?access_token=${WATTKEEPER_DINGTALK_TOKEN}`), and the value is read from
the process environment when the file is loaded. Every error message that shows a URL shows it
through `redact_url`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN: Final = "***"
_REFERENCE: Final = re.compile(r"\$\{([^}]*)\}")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
# Query parameters that carry a secret in the webhook and broker URLs wattkeeper takes.
SECRET_PARAMS: Final = frozenset(
    {"access_token", "token", "key", "secret", "sign", "password", "passwd", "api_key", "apikey", "auth"}
)


def read_dotenv(path: Path = Path(".env")) -> dict[str, str]:
    """The `.env` file of the current directory, as Settings reads it ({} when there is none)."""
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `${NAME}` in `text` by the variable's value (inserted as written: percent-encode
    anything that is not URL-safe); ValueError naming the variable when it is unset or empty.

    Without `environ`: the process environment, then the current directory's `.env`."""
    if "$" not in text:
        return text
    if environ is None:
        # The same sources as every other setting: the process environment, then `.env`.
        env: Mapping[str, str] = {**read_dotenv(), **os.environ}
    else:
        env = environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _NAME.match(name):
            raise ValueError(f"'${{{name[:40]}}}' is not a variable reference; write ${{NAME}} (letters, digits, _)")
        found = env.get(name)
        if not found:
            raise ValueError(f"environment variable {name} is not set (or empty); this value takes its secret from it")
        return found

    if "${" in _REFERENCE.sub("", text):
        raise ValueError("an unterminated '${' reference; write ${NAME}")
    return _REFERENCE.sub(value, text)


def expand_env_refs(value: object) -> object:
    """`expand_env` for a validator: strings expanded, anything else passed on for the type check."""
    return expand_env(value) if isinstance(value, str) else value


def redact_url(url: str) -> str:
    """The URL with its password, secret query parameters and (for Slack-style hooks) secret path hidden;
    text that is not a URL is hidden entirely when it might hold a credential."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return HIDDEN if "@" in url else url[:200]
    if not parts.netloc:  # sqlite:///path, or not a URL at all
        return HIDDEN if "@" in url else url[:200]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.password is not None:
        netloc = f"{parts.username}:{HIDDEN}@{netloc}"
    elif parts.username is not None:  # a lone user part is often a token
        netloc = f"{HIDDEN}@{netloc}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, HIDDEN if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*/:")
    path = parts.path
    if host.endswith("hooks.slack.com") and path.startswith("/services/"):
        path = "/services/" + HIDDEN
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def url_host(url: str) -> str:
    """host[:port] of a URL, never its user, password, path or query (names of channels in logs)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "?"
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return host + (f":{port}" if port is not None else "")


def redact_text(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text) if "://" in text else text


class RedactUrls(logging.Filter):
    """Hides credentials in the URLs a library logs (httpx logs each request's full URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(a if isinstance(a, int | float) else redact_text(str(a)) for a in record.args)
        return True


def redact_logs(*loggers: str) -> None:
    """Put a RedactUrls filter on these loggers (once)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUrls) for f in logger.filters):
            logger.addFilter(RedactUrls())
