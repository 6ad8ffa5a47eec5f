"""Secrets kept out of the cutover report, whatever its sources hold.

The shadow samples arrive redacted already, but the report also quotes history details, gate
details, canary reasons and contract findings, written by code that never meant them for a
reader. So the report redacts three ways: any field named like a secret, free text that looks
like a credential (`Bearer …`, a JWT, `password=…`, a URL's password), and, last of all, every
known secret value of this installation (`.env` and the environment) wherever it appears.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ops.settings import OpsSettings, read_env_file

REDACTED = "[redacted]"
SECRET_NAME = re.compile(
    r"token|password|passwd|secret|authorization|cookie|api[_-]?key|credential", re.I
)
# The mock's and prod's default demo password: redacted even when .env does not name it.
DEFAULT_SECRETS = ("demo-password-123",)
# Shorter values are words ("cutover" is the compose password and the project's name).
MIN_SECRET_LENGTH = 10

_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")
_NAMED_VALUE = re.compile(
    r"(?P<key>[\w.-]*(?:token|password|passwd|secret|authorization|cookie|api[_-]?key)[\w.-]*)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?!(?:(?:Bearer|Basic)\s+)?\[redacted\])"
    r"(?P<value>(?:Bearer\s+|Basic\s+)?[^\s\"',;&)}\]]+)",
    re.I,
)


def known_secrets(settings: OpsSettings, environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of this installation: every variable named like a secret."""
    env = {**read_env_file(settings.env_file), **(os.environ if environ is None else environ)}
    values = {
        value.strip()
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    values.update(DEFAULT_SECRETS)
    # Longest first, so a secret containing another is replaced whole.
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text with anything that looks like a credential, or is a known secret, replaced."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _NAMED_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like value with fields named like a secret replaced and its strings scrubbed."""
    secrets = tuple(secrets)
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if SECRET_NAME.search(str(key)) else redact_value(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item, secrets) for item in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value
