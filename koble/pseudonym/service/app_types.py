"""Callable types the route modules share with :mod:`koble.pseudonym.service.app`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, Response

from koble.pseudonym.service.auth import Principal
from koble.pseudonym.service.operations import Outcome

__all__ = ["Principalise", "Respond"]

#: Authenticate the request's caller and (given a domain) authorise the operation in it.
Principalise = Callable[[Request, str, str | None], Principal]
#: Turn an outcome into an Arrow response (200, or 422 with the rejects).
Respond = Callable[[Request, Outcome], Response]
