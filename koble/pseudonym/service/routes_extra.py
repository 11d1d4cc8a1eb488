"""Blind-mode (OPRF) and re-identification routes; see :mod:`koble.pseudonym.service.app`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import polars as pl
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from koble.errors import AuthorisationError, ColumnError, UsageError
from koble.pseudonym.service import operations as ops
from koble.pseudonym.service.app_types import Principalise, Respond
from koble.pseudonym.service.arrowio import ARROW, read_body, read_table
from koble.pseudonym.service.operations import Outcome, ServiceState

__all__ = ["add_blind_and_reidentification"]

_ARROW_BODY = {
    "requestBody": {
        "required": True,
        "content": {ARROW: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _oprf(state: ServiceState, domain: str, frame: pl.DataFrame) -> Outcome:
    from koble.pseudonym.blind import BlindKey

    if "blinded" not in frame.columns or frame["blinded"].dtype != pl.Binary:
        raise ColumnError("send a binary column 'blinded' of 32-byte elements", column="blinded")
    key = BlindKey.from_keyset(state.keyset, domain)
    evaluated = key.evaluate(frame["blinded"].to_list())
    out = pl.DataFrame({"evaluated": pl.Series(evaluated, dtype=pl.Binary)})
    return Outcome(out, frame.height, 0, True, key.key_id)


def add_blind_and_reidentification(
    app: FastAPI,
    state: ServiceState,
    principal: Principalise,
    bulk: Callable[[Callable[[], Any]], Awaitable[Any]],
    respond: Respond,
) -> None:
    limit = state.config.max_request_bytes

    @app.post("/v1/oprf/evaluate", openapi_extra=_ARROW_BODY)
    async def oprf_evaluate(
        request: Request, domain: str = Query(min_length=1, max_length=128)
    ) -> Response:
        principal(request, "oprf", domain)
        body = await read_body(request.stream(), limit)
        return respond(request, await bulk(lambda: _oprf(state, domain, read_table(body))))

    @app.get("/v1/oprf/key")
    async def oprf_key(
        request: Request, domain: str = Query(min_length=1, max_length=128)
    ) -> dict[str, str]:
        from koble.pseudonym.blind import BlindKey

        principal(request, "oprf", domain)
        key = BlindKey.from_keyset(state.keyset, domain)
        return {
            "domain": domain,
            "key_id": key.key_id,
            "suite": "ristretto255-SHA512",
            "public_key": key.public_key.hex(),
        }

    @app.post("/v1/reidentify", openapi_extra=_ARROW_BODY)
    async def reidentify(
        request: Request,
        domain: str = Query(min_length=1, max_length=128),
        reason: str = Query(min_length=1, max_length=500),
        legal_basis: str = Query(min_length=1, max_length=200),
    ) -> Response:
        who = principal(request, "reidentify", domain)
        frame = read_table(await read_body(request.stream(), limit))
        if "pseudonym" not in frame.columns or frame["pseudonym"].dtype not in (pl.String, pl.Null):
            raise ColumnError("send the pseudonyms as text in a column 'pseudonym'",
                              column="pseudonym")  # fmt: skip
        pending = ops.new_request(
            state, who.party, domain, reason, legal_basis, frame["pseudonym"].cast(pl.String)
        )
        request.state.audit.update(rows=frame.height)
        if state.config.second_approval:
            body = {"request": pending.id, "status": "pending approval by another officer"}
            return JSONResponse(body, 202)
        return respond(request, await bulk(functools.partial(ops.reidentify_rows, state, pending)))

    @app.post("/v1/reidentify/{request_id}/approve")
    async def approve(request: Request, request_id: str) -> dict[str, str]:
        who = principal(request, "reidentify", None)  # authenticate before any lookup
        with state.lock:
            pending = state.requests.get(request_id)
        if pending is None:
            raise UsageError("no such re-identification request")
        principal(request, "reidentify", pending.domain)
        ops.approve(state, request_id, who.party)
        return {"request": request_id, "status": "approved", "approved_by": who.party}

    @app.get("/v1/reidentify/{request_id}")
    async def result(request: Request, request_id: str) -> Response:
        who = principal(request, "reidentify", None)  # authenticate before any lookup
        with state.lock:
            pending = state.requests.get(request_id)
            if pending is None:
                raise UsageError("no such re-identification request")
            principal(request, "reidentify", pending.domain)
            if who.party != pending.requester:
                raise AuthorisationError("only the officer who asked may collect the result")
            if state.config.second_approval and pending.approved_by is None:
                return JSONResponse({"request": request_id, "status": "pending"}, 409)
            state.requests.pop(request_id)  # released once, whatever happens next
        return respond(request, await bulk(functools.partial(ops.reidentify_rows, state, pending)))
