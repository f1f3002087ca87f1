"""Optional API keys for the inference routes (off unless keys are configured).

Keys are never stored: the service holds their SHA-256 digests, each with a name for the
metrics and logs, from `ACTSERVE_API_KEYS` ("name:sha256hex" entries, comma-separated)
and/or `ACTSERVE_API_KEYS_FILE` (one "name:sha256hex" a line, '#' comments). A client sends
its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`; no key is 401, a key that is
not configured is 403, both as the service's JSON error body. Requests are counted per key
name (`actserve_api_key_requests_total`). Make a key and its line with:

    KEY=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    echo "team-a:$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)"
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import Forbidden, Unauthorized

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def parse_keys(entries: list[str], file: Path | None) -> dict[str, str]:
    """digest → name, from the setting's entries and the file's lines. Raises ValueError
    naming the first malformed entry (never echoing more than its name)."""
    lines = list(entries)
    if file is not None:
        try:
            text = file.read_text()
        except OSError as error:
            raise ValueError(f"ACTSERVE_API_KEYS_FILE {file}: {error.strerror}") from None
        lines += [line.split("#", 1)[0] for line in text.splitlines()]
    keys: dict[str, str] = {}
    for number, line in enumerate((line.strip() for line in lines), 1):
        if not line:
            continue
        name, _, hexdigest = line.partition(":")
        if not (_NAME.fullmatch(name) and _DIGEST.fullmatch(hexdigest.lower())):
            raise ValueError(
                f"API key entry {number} ({name[:64]!r}) is not NAME:SHA256HEX (the key's "
                "SHA-256 digest as 64 hex digits, never the key itself)"
            )
        keys[hexdigest.lower()] = name
    return keys


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def require_api_key(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """The inference routes' check, when keys are configured: 401 without a key, 403 with
    one that is not configured; counts the request under the key's name."""
    keys: dict[str, str] = request.app.state.api_keys
    if not keys:
        return
    scheme, _, bearer = (authorization or "").partition(" ")
    given = x_api_key or (bearer if scheme.lower() == "bearer" else "")
    if not given:
        raise Unauthorized(
            "this service needs an API key: send 'Authorization: Bearer <key>' or "
            "'X-API-Key: <key>'"
        )
    name = keys.get(digest(given))
    if name is None:
        raise Forbidden("the API key is not accepted here")
    request.app.state.engine.metrics.api_key_requests.labels(name).inc()
    request.state.api_key = name


ApiKeyDep = Depends(require_api_key)
