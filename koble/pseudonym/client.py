"""A Python client for the pseudonym service (``koble serve``).

>>> client = ServiceClient("https://ttp.example:8443", token=token, ca="ca.pem")
>>> result = client.pseudonymise(frame["fnr"], domain="project:p2026-014")

Bulk calls send and receive Arrow IPC streams. Errors come back as koble's own exceptions:
401 → :class:`~koble.pseudonym.service.auth.AuthenticationError`, 403 →
:class:`~koble.errors.AuthorisationError`, 422 → :class:`RejectedError` carrying the rejects
table (row, reason, message), anything else → :class:`ServiceError` with the status. The
token is sent only as an ``Authorization`` header and never appears in a repr.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from koble.errors import AuthorisationError, KobleError
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.service.arrowio import ARROW, arrow_bytes, read_table
from koble.pseudonym.service.auth import AuthenticationError

__all__ = ["RejectedError", "ServiceClient", "ServiceError"]


class ServiceError(KobleError):
    """The service answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"the service answered {status}: {message}")


class RejectedError(KobleError):
    """Some identifiers were invalid; nothing was pseudonymised. ``rejects`` says which."""

    def __init__(self, rejects: pl.DataFrame) -> None:
        self.rejects = rejects
        super().__init__(f"{rejects.height} identifiers rejected; see .rejects (row, reason)")


class ServiceClient:
    """One connection pool to the service, authenticated by token or client certificate."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        cert: tuple[Path, Path] | None = None,
        ca: Path | str | None = None,
        timeout: float = 600.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        self._url = url.rstrip("/")
        self._http = httpx.Client(base_url=self._url, headers=headers, timeout=timeout,
                                  verify=context)  # fmt: skip

    def __repr__(self) -> str:
        return f"ServiceClient({self._url!r})"

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------
    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        if response.status_code == 422 and response.headers.get("content-type") == ARROW:
            raise RejectedError(read_table(response.content, what="rejects"))
        try:
            message = str(response.json().get("message", response.text))
        except ValueError:
            message = response.text[:200]
        if response.status_code == 401:
            raise AuthenticationError()
        if response.status_code == 403:
            raise AuthorisationError(message)
        raise ServiceError(response.status_code, message)

    def _post_arrow(self, path: str, frame: pl.DataFrame, params: dict[str, Any]) -> httpx.Response:
        response = self._http.post(
            path, params=params, content=arrow_bytes(frame), headers={"Content-Type": ARROW}
        )
        return self._check(response)

    # --- operations -----------------------------------------------------------------------
    def health(self) -> bool:
        return self._http.get("/health").status_code == 200

    def pseudonymise(
        self,
        values: pl.Series | Sequence[str],
        *,
        domain: str,
        scheme: str = "fnr",
        partial: bool = False,
        test_numbers: bool = False,
    ) -> pl.DataFrame:
        """(row, pseudonym, reason) per value, in order. Without ``partial`` any invalid value
        raises :class:`RejectedError` and nothing is pseudonymised."""
        series = values if isinstance(values, pl.Series) else pl.Series(list(values))
        frame = pl.DataFrame({"id": series.cast(pl.String)})
        params = {
            "domain": domain,
            "column": "id",
            "scheme": scheme,
            "partial": str(partial).lower(),
            "test_numbers": str(test_numbers).lower(),
        }
        return read_table(self._post_arrow("/v1/pseudonymise", frame, params).content)

    def ingest(self, sealed_batch: bytes, *, registry: str, partial: bool = False) -> bytes:
        """A sealed batch in; the forwarded batch (sealed to the registry) back."""
        response = self._http.post(
            "/v1/ingest",
            params={"registry": registry, "partial": str(partial).lower()},
            content=sealed_batch,
            headers={"Content-Type": "application/octet-stream"},
        )
        return self._check(response).content

    def blind_pseudonymise(
        self, identifiers: Sequence[str], *, domain: str, randbytes: RandBytes
    ) -> list[str]:
        """Blind mode: the service evaluates blinded elements and never sees the identifiers."""
        from koble.pseudonym.blind import blind

        batch = blind(identifiers, randbytes)
        frame = pl.DataFrame({"blinded": pl.Series(batch.blinded, dtype=pl.Binary)})
        answer = read_table(
            self._post_arrow("/v1/oprf/evaluate", frame, {"domain": domain}).content
        )
        return batch.finalize(answer["evaluated"].to_list())

    def request_reidentification(
        self, pseudonyms: Sequence[str], *, domain: str, reason: str, legal_basis: str
    ) -> str | pl.DataFrame:
        """A request id to be approved by another officer (or the result, if none is needed)."""
        frame = pl.DataFrame({"pseudonym": list(pseudonyms)}, schema={"pseudonym": pl.String})
        params = {"domain": domain, "reason": reason, "legal_basis": legal_basis}
        response = self._post_arrow("/v1/reidentify", frame, params)
        if response.status_code == 202:
            return str(response.json()["request"])
        return read_table(response.content)

    def approve_reidentification(self, request_id: str) -> None:
        self._check(self._http.post(f"/v1/reidentify/{request_id}/approve"))

    def reidentification_result(self, request_id: str) -> pl.DataFrame:
        return read_table(self._check(self._http.get(f"/v1/reidentify/{request_id}")).content)


def pseudonymise_file_remote(
    client: ServiceClient,
    source: Path,
    output: Path,
    *,
    column: str,
    domain: str,
    rejects: Path | None = None,
    id_scheme: str = "fnr",
    test_numbers: bool = False,
    output_column: str | None = None,
) -> dict[str, Any]:
    """:func:`koble.pseudonym.operations.pseudonymise_file` through the service: the same
    output and rejects files, the keys staying at the TTP."""
    from koble.pseudonym.operations import default_rejects_path
    from koble.pseudonym.pseudonymise import EXTRA_MESSAGES
    from koble.registries.identifiers.check import reject_messages, rejects_table
    from koble.tables import read_table as read_file
    from koble.tables import require_column, write_table

    frame = read_file(source)
    values = require_column(frame, column, source)
    result = client.pseudonymise(
        values, domain=domain, scheme=id_scheme, partial=True, test_numbers=test_numbers
    )
    good = result["reason"].is_null()
    table = frame.filter(good).with_columns(result["pseudonym"].filter(good).alias(column))
    write_table(table.rename({column: output_column or column}), output)
    rejects_path = rejects or default_rejects_path(output)
    known = reject_messages(EXTRA_MESSAGES)
    messages = {r: known.get(r, r) for r in result["reason"].drop_nulls().unique().to_list()}
    write_table(rejects_table(frame, result["reason"], messages), rejects_path)
    return {
        "rows": frame.height,
        "pseudonymised": table.height,
        "rejected": frame.height - table.height,
        "domain": domain,
        "output": str(output),
        "rejects_path": str(rejects_path),
        "reconciled": frame.height == table.height + int((~good).sum()),
    }
