"""What the published OpenAPI document says each route answers: media types and errors.

Bulk bodies are Arrow IPC streams (:data:`~.arrowio.ARROW`) both ways; the sealed ingest
takes the sealed batch as ``application/octet-stream`` and answers with an ingest result
(:data:`~.ingest_result.INGEST_RESULT`). Every error is JSON ``{"error", "message"}``
(:data:`ERROR_SCHEMA`), except the 422 of ``/v1/pseudonymise`` and ``/v1/ingest`` for invalid
identifiers, whose body is the rejects as an Arrow stream (a 422 for a bad parameter is JSON
there too). The declarations are exact enough for schemathesis to check the status codes,
content types and JSON bodies the service sends against them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from koble.pseudonym.service.arrowio import ARROW
from koble.pseudonym.service.ingest_result import INGEST_RESULT

__all__ = [
    "ARROW_BODY",
    "ERROR_SCHEMA",
    "OCTET_BODY",
    "ArrowResponse",
    "IngestResultResponse",
    "Ready",
    "responses",
]

_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
ARROW_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {ARROW: _BINARY}}}
OCTET_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/octet-stream": _BINARY}}
}
_COUNT = {"schema": {"type": "string", "pattern": "^[0-9]+$"}}
COUNTS = {
    "X-Koble-Rows": {"description": "rows in the request", **_COUNT},
    "X-Koble-Rejected": {"description": "rows rejected", **_COUNT},
}
KEY_ID = {"X-Koble-Key-Id": {"description": "id of the key used", "schema": {"type": "string"}}}


#: Every JSON error: the kind (a koble error class) and a message without any value the
#: caller sent. Inline (not a component), so it is the same under any route's media type.
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "additionalProperties": False,
}
_ERROR_JSON = {"application/json": {"schema": ERROR_SCHEMA}}


class Slots(BaseModel):
    total: int
    in_use: int
    waiting: int
    receiving: int
    saturated: bool


class TokenWarnings(BaseModel):
    expired: int
    expiring_soon: int
    warning_days: float


class Connections(BaseModel):
    """Open connections and their limit, those not yet authenticated, the cap on those per
    client address, and connections refused over it since start (:mod:`.connections`)."""

    open: int
    limit: int
    unproven: int
    unproven_per_address_limit: int
    refused: int
    files_open: int | None = None  #: open file descriptors (None: the platform does not say)
    files_limit: int | None = None  #: their soft limit (-1: none)
    accept_failures: int = 0  #: accepts that failed for want of descriptors, since start


class Ready(BaseModel):
    """``/ready``: ready, or the problems that make it not ready (503); the work slots, the
    connections (null when the app runs without the service's server) and counts of
    configured tokens that have expired or expire within ``warning_days``."""

    ready: bool
    problems: list[str]
    slots: Slots
    connections: Connections | None = None
    tokens: TokenWarnings


class ArrowResponse(Response):
    media_type = ARROW


class IngestResultResponse(Response):
    media_type = INGEST_RESULT


_WHY = {
    400: "malformed body, wrong columns or invalid values",
    401: "no valid credentials",
    403: "the party may not do this",
    404: "no such re-identification request",
    408: "the request body did not arrive within the deadline",
    409: "the re-identification request is not approved yet, or approved already",
    413: "request body over the size limit",
    429: "the party has as many requests in flight, or pending, as it may",
    422: "invalid parameters",
    503: "busy, too many pending requests, or the audit log unavailable",
}


def responses(
    *codes: int, ok: str | None = None, ok_status: int = 200, rejects: bool = False
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: a body of media type ``ok`` for ``ok_status`` (when
    given) and a JSON error (:data:`ERROR_SCHEMA`) for each of ``codes``; with ``rejects``
    the 422 may also be an Arrow stream of rejects."""
    declared: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        headers = {**COUNTS, **(KEY_ID if ok == ARROW else {})}
        declared[ok_status] = {
            "description": "the result",
            "content": {ok: _BINARY},
            "headers": headers,
        }
    for code in codes:
        entry: dict[str, Any] = {"description": _WHY[code], "content": dict(_ERROR_JSON)}
        if code in (429, 503):
            entry["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        if code == 422 and rejects:
            entry["description"] = "invalid identifiers (the rejects, Arrow) or parameters"
            entry["content"][ARROW] = _BINARY
        declared[code] = entry
    return declared
