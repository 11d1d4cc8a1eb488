"""Bulk routes: pseudonymise, sealed ingest, blind mode (OPRF); see :mod:`.app`.

Each handler authenticates and authorises, hands the body to :meth:`.Gate.work` with the
library call to make (:mod:`.operations`), and maps the outcome to a response.
"""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI, Query, Request, Response

from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.service import operations as ops
from koble.pseudonym.service.arrowio import ARROW, read_table
from koble.pseudonym.service.gate import Gate
from koble.pseudonym.service.ingest_result import INGEST_RESULT
from koble.pseudonym.service.openapi import (
    ARROW_BODY,
    OCTET_BODY,
    ArrowResponse,
    IngestResultResponse,
    responses,
)

__all__ = ["add_bulk_routes"]

_DOMAIN = Query(min_length=1, max_length=128, description="pseudonym domain")
_BULK_ERRORS = (400, 401, 403, 408, 413, 422, 429, 503)


def add_bulk_routes(app: FastAPI, gate: Gate) -> None:
    state = gate.state

    @app.post(
        "/v1/pseudonymise",
        openapi_extra=ARROW_BODY,
        response_class=ArrowResponse,
        responses=responses(*_BULK_ERRORS, ok=ARROW, rejects=True),
    )
    async def pseudonymise(
        request: Request,
        domain: str = _DOMAIN,
        column: str = Query("fnr", min_length=1, max_length=128),
        scheme: str = Query("fnr", pattern="^(fnr|hpr|orgnr)$"),
        partial: bool = False,
        test_numbers: bool = False,
    ) -> Response:
        """(row, pseudonym, reason) per row; invalid identifiers make it a 422 whose body
        is the rejects (row, reason, message), unless ``partial``."""
        gate.caller_in(request, "pseudonymise", domain)

        def call(body: bytes) -> ops.Outcome:
            return ops.pseudonymise(
                state,
                read_table(body),
                column=column,
                domain=domain,
                id_scheme=cast(IdScheme, scheme),
                partial=partial,
                test_numbers=test_numbers,
            )

        return gate.respond(request, await gate.work(request, call))

    @app.post(
        "/v1/ingest",
        openapi_extra=OCTET_BODY,
        response_class=IngestResultResponse,
        responses=responses(*_BULK_ERRORS, ok=INGEST_RESULT, rejects=True),
    )
    async def ingest(
        request: Request,
        registry: str = Query(min_length=1, max_length=64, pattern="^[a-z0-9][a-z0-9._-]*$"),
        partial: bool = False,
        test_numbers: bool = False,
    ) -> Response:
        """A sealed batch in; the forwarded batch and the rejects out (an ingest result).
        Without ``partial`` any invalid identifier makes it a 422: the rejects, nothing
        forwarded."""
        gate.caller_in(request, "ingest", f"registry:{registry}")

        def call(body: bytes) -> ops.Outcome:
            return ops.ingest(
                state, body, registry=registry, partial=partial, test_numbers=test_numbers
            )

        return gate.respond(request, await gate.work(request, call))

    @app.post(
        "/v1/oprf/evaluate",
        openapi_extra=ARROW_BODY,
        response_class=ArrowResponse,
        responses=responses(*_BULK_ERRORS, ok=ARROW),
    )
    async def oprf_evaluate(request: Request, domain: str = _DOMAIN) -> Response:
        """Blind mode: a binary column ``blinded`` in, ``evaluated`` out, in order; the key
        id in ``X-Koble-Key-Id``."""
        gate.caller_in(request, "oprf", domain)
        outcome = await gate.work(
            request, lambda body: ops.oprf_evaluate(state, read_table(body), domain=domain)
        )
        return gate.respond(request, outcome)

    @app.get("/v1/oprf/key", responses=responses(400, 401, 403, 422, 503))
    async def oprf_key(request: Request, domain: str = _DOMAIN) -> dict[str, str]:
        """The domain's OPRF key: id, suite and public key (hex)."""
        gate.caller_in(request, "oprf", domain)
        key = ops.oprf_key(state, domain)
        gate.note(request, key_id=key["key_id"])
        return key
