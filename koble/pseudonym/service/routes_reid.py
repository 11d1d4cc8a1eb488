"""Re-identification routes: ask, approve, collect; the rules are in :mod:`.reid`.

Every route authenticates first. Approving and collecting then refuse (403) a party without
the officer role and a ``reidentify`` grant before the request id is looked up, so that only
officers learn whether an id exists (404); once found, the caller is authorised in the
request's domain. Desk steps run in worker threads: they take the desk's lock and write the
audit log, neither of which the event loop may wait for.
"""

from __future__ import annotations

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from koble.pseudonym.service import reid
from koble.pseudonym.service.arrowio import ARROW, read_table
from koble.pseudonym.service.gate import Gate
from koble.pseudonym.service.openapi import ARROW_BODY, ArrowResponse, responses
from koble.pseudonym.service.operations import Outcome

__all__ = ["add_reidentification_routes"]

_ID = Path(min_length=1, max_length=64, description="the request id (16 hex digits)")


_PENDING = {
    "title": "Pending",
    "type": "object",
    "required": ["request", "status"],
    "properties": {"request": {"type": "string"}, "status": {"type": "string"}},
}


class Approved(BaseModel):
    request: str
    status: str
    approved_by: str


def add_reidentification_routes(app: FastAPI, gate: Gate) -> None:
    state = gate.state

    submitted = responses(400, 401, 403, 408, 413, 422, 429, 503, ok=ARROW)
    submitted[202] = {
        "description": "pending another officer's approval",
        "content": {"application/json": {"schema": _PENDING}},
    }

    @app.post(
        "/v1/reidentify",
        openapi_extra=ARROW_BODY,
        response_class=ArrowResponse,
        responses=submitted,
    )
    async def reidentify(
        request: Request,
        domain: str = Query(min_length=1, max_length=128),
        reason: str = Query(min_length=1, max_length=500),
        legal_basis: str = Query(min_length=1, max_length=200),
    ) -> Response:
        """Ask to re-identify the text column ``pseudonym``: 202 with the request id, or
        (when the service needs no second approval) the result, (row, identifier, reason)."""
        who = gate.caller_in(request, "reidentify", domain)
        reid.check_request(who.party, reason, legal_basis)  # 400 before any body is read
        await gate.off_loop(lambda: reid.has_room(state, who.party))

        def call(body: bytes) -> reid.ReidRequest | Outcome:
            frame = read_table(body)
            return reid.submit(state, who.party, domain, reason, legal_basis, frame)

        made = await gate.work(request, call)
        if isinstance(made, Outcome):
            return gate.respond(request, made)
        gate.note(request, rows=made.pseudonyms.len(), request_id=made.id)
        status = "pending approval by another officer"
        return JSONResponse({"request": made.id, "status": status}, 202)

    @app.post(
        "/v1/reidentify/{request_id}/approve",
        response_model=Approved,
        responses=responses(401, 403, 404, 409, 422, 503),
    )
    async def approve(request: Request, request_id: str = _ID) -> Approved:
        """Approve another officer's request (once)."""
        who = gate.caller(request, "reidentify")
        gate.may_at_all(who, "reidentify")
        pending = await gate.off_loop(lambda: reid.lookup(state, request_id))
        gate.authorise(request, who, "reidentify", pending.domain)
        gate.note(request, request_id=pending.id, rows=pending.pseudonyms.len())
        await gate.off_loop(lambda: reid.approve(state, pending.id, who.party))
        return Approved(request=pending.id, status="approved", approved_by=who.party)

    @app.get(
        "/v1/reidentify/{request_id}",
        response_class=ArrowResponse,
        responses=responses(401, 403, 404, 409, 422, 429, 503, ok=ARROW),
    )
    async def result(request: Request, request_id: str = _ID) -> Response:
        """The result, (row, identifier, reason), to the officer who asked: once."""
        who = gate.caller(request, "reidentify")
        gate.may_at_all(who, "reidentify")
        pending = await gate.off_loop(lambda: reid.lookup(state, request_id))
        gate.authorise(request, who, "reidentify", pending.domain)
        gate.note(request, request_id=pending.id)
        reid.check_collect(state, pending, who.party)  # 403/409 without taking a slot
        outcome = await gate.run(request, lambda: reid.collect(state, pending.id, who.party))
        return gate.respond(request, outcome)
