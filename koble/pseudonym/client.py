"""A Python client for the pseudonym service (``koble serve``).

>>> client = ServiceClient("https://ttp.example:8443", token=token, ca="ca.pem")
>>> result = client.pseudonymise(frame["fnr"], domain="project:p2026-014")

Bulk calls send and receive Arrow IPC streams. Errors come back as koble's own exceptions:
401 → :class:`~koble.pseudonym.service.auth.AuthenticationError`, 403 →
:class:`~koble.errors.AuthorisationError`, 422 with rejects → :class:`RejectedError`
carrying the rejects table (row, reason, message), anything else → :class:`ServiceError`
with the status. A service that cannot be reached, or whose TLS certificate cannot be
verified (no ``ca=`` for a test CA), is a :class:`ServiceUnreachableError` with a one-line
reason. The token is sent only as an ``Authorization`` header and never appears in a repr.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from koble.errors import (
    AuthorisationError,
    ColumnError,
    CryptoError,
    KobleError,
    UsageError,
    redact,
)
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.service.arrowio import ARROW, arrow_bytes, read_table
from koble.pseudonym.service.auth import AuthenticationError
from koble.pseudonym.service.ingest_result import unpack

__all__ = [
    "Ingested",
    "RejectedError",
    "ServiceClient",
    "ServiceError",
    "ServiceUnreachableError",
    "pseudonymise_file_remote",
]

KEY_ID_HEADER = "X-Koble-Key-Id"


class ServiceError(KobleError):
    """The service answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"the service answered {status}: {message}")


class ServiceUnreachableError(KobleError):
    """No answer: the connection, the TLS handshake or the wait failed."""


class RejectedError(KobleError):
    """Some identifiers were invalid; nothing was pseudonymised. ``rejects`` says which."""

    def __init__(self, rejects: pl.DataFrame) -> None:
        self.rejects = rejects
        super().__init__(f"{rejects.height} identifiers rejected; see .rejects (row, reason)")


@dataclass(frozen=True)
class Ingested:
    """A sealed ingest's answer: the forwarded batch for the registry, and the rejects
    (batch_id, row, column, reason, message) for the sender; no identifiers."""

    forwarded: bytes = field(repr=False)
    rejects: pl.DataFrame = field(repr=False)

    def __repr__(self) -> str:
        return f"Ingested(forwarded={len(self.forwarded)} bytes, rejected={self.rejects.height})"


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _unreachable(url: httpx.URL, exc: httpx.TransportError, timeout: float) -> KobleError:
    where = _origin(url)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ServiceUnreachableError(
            f"cannot verify the TLS certificate of {where}: give the CA certificate that "
            "signed it with --ca (Python: ca=); `koble serve pki` writes it as ca.pem"
        )
    if isinstance(exc, httpx.TimeoutException):
        return ServiceUnreachableError(f"{where} did not answer within {timeout:g} s")
    if "SSL" in text or "TLS" in text:
        return ServiceUnreachableError(
            f"the TLS handshake with {where} failed ({redact(text)[:160]}); check the "
            "client certificate and key, and that the URL is the service's"
        )
    if isinstance(exc, httpx.ConnectError):
        return ServiceUnreachableError(f"cannot connect to {where} ({redact(text)[:160]})")
    return ServiceUnreachableError(
        f"the connection to {where} failed ({type(exc).__name__}: {redact(text)[:160]})"
    )


def _context(ca: Path | str | None, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"no such CA certificate file: {ca}")
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except ssl.SSLError:
        raise UsageError(f"cannot read CA certificates from {ca}") from None
    if cert is not None:
        try:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        except (OSError, ssl.SSLError):
            raise UsageError(
                f"cannot load the client certificate {cert[0]} with its key {cert[1]}"
            ) from None
    return context


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
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(base_url=self._url, headers=headers, timeout=timeout,
                                  verify=_context(ca, cert))  # fmt: skip

    def __repr__(self) -> str:
        return f"ServiceClient({self._url!r})"

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------
    def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **options)
        except httpx.TransportError as exc:
            raise _unreachable(self._http.base_url, exc, self._timeout) from None

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        if response.status_code == 422 and response.headers.get("content-type") == ARROW:
            raise RejectedError(read_table(response.content, what="rejects"))
        try:
            document = response.json()
            message = str(document.get("message", "")) if isinstance(document, dict) else ""
        except ValueError:
            message = ""
        message = message or redact(response.text[:200]) or response.reason_phrase
        if response.status_code == 401:
            raise AuthenticationError()
        if response.status_code == 403:
            raise AuthorisationError(message)
        raise ServiceError(response.status_code, message)

    def _post_arrow(self, path: str, frame: pl.DataFrame, params: dict[str, Any]) -> httpx.Response:
        body = arrow_bytes(frame)
        response = self._request(
            "POST", path, params=params, content=body, headers={"Content-Type": ARROW}
        )
        return self._check(response)

    # --- operations -----------------------------------------------------------------------
    def health(self) -> bool:
        return self._request("GET", "/health").status_code == 200

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
        raises :class:`RejectedError` and nothing is pseudonymised. Identifiers must be text
        (a number column has lost its leading zeros): anything else is a ColumnError."""
        series = values if isinstance(values, pl.Series) else pl.Series(list(values))
        if series.dtype == pl.Null:
            series = series.cast(pl.String)
        if series.dtype != pl.String:
            raise ColumnError(f"identifiers must be text, the column is {series.dtype}")
        params = {
            "domain": domain,
            "column": "id",
            "scheme": scheme,
            "partial": str(partial).lower(),
            "test_numbers": str(test_numbers).lower(),
        }
        frame = pl.DataFrame({"id": series})
        return read_table(self._post_arrow("/v1/pseudonymise", frame, params).content)

    def ingest(self, sealed_batch: bytes, *, registry: str, partial: bool = False) -> Ingested:
        """A sealed batch in; the forwarded batch (sealed to the registry) and the rejects
        back. Without ``partial`` any invalid identifier raises :class:`RejectedError`
        (row, column, reason, message) and nothing is forwarded."""
        response = self._request(
            "POST",
            "/v1/ingest",
            params={"registry": registry, "partial": str(partial).lower()},
            content=sealed_batch,
            headers={"Content-Type": "application/octet-stream"},
        )
        forwarded, rejects = unpack(self._check(response).content)
        return Ingested(forwarded, rejects)

    def oprf_key(self, domain: str) -> dict[str, str]:
        """The domain's OPRF key: ``key_id``, ``suite`` and ``public_key`` (hex)."""
        answer = self._check(self._request("GET", "/v1/oprf/key", params={"domain": domain}))
        document = answer.json()
        if not isinstance(document, dict):
            raise ServiceError(answer.status_code, "not an OPRF key description")
        return {str(k): str(v) for k, v in document.items()}

    def blind_pseudonymise(
        self,
        identifiers: Sequence[str],
        *,
        domain: str,
        randbytes: RandBytes | None = None,
        id_scheme: IdScheme = "fnr",
        test_numbers: bool = False,
        key_id: str | None = None,
    ) -> list[str]:
        """Blind mode: the service evaluates blinded elements and never sees the identifiers.

        The blinding factors come from ``randbytes``, by default (None) the operating
        system's randomness (``os.urandom``); a test may pass its own, but never give it a
        predictable source, which would let the service unblind the elements it sees.

        The service names the key it used (``X-Koble-Key-Id``); it must be ``key_id`` (pin
        it, e.g. from a manifest) or, by default, the domain's current key from
        :meth:`oprf_key`, else CryptoError: pseudonyms of different keys never match."""
        from koble.pseudonym.blind import blind

        expected = key_id or self.oprf_key(domain)["key_id"]
        batch = blind(
            identifiers, randbytes or os.urandom, id_scheme=id_scheme, test_numbers=test_numbers
        )
        frame = pl.DataFrame({"blinded": pl.Series(batch.blinded, dtype=pl.Binary)})
        response = self._post_arrow("/v1/oprf/evaluate", frame, {"domain": domain})
        if response.headers.get(KEY_ID_HEADER) != expected:
            raise CryptoError("the service evaluated with another key than expected for the domain")
        return batch.finalize(read_table(response.content)["evaluated"].to_list())

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
        self._check(self._request("POST", f"/v1/reidentify/{request_id}/approve"))

    def reidentification_result(self, request_id: str) -> pl.DataFrame:
        response = self._check(self._request("GET", f"/v1/reidentify/{request_id}"))
        return read_table(response.content)


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
    allow_identifiers: Collection[str] = (),
) -> dict[str, Any]:
    """:func:`koble.pseudonym.operations.pseudonymise_file` through the service: the same
    output and rejects files, the keys staying at the TTP. A column that is not text is
    refused as the local command refuses it (a ColumnError), before anything is sent, and so
    is a pass-through column holding person numbers that ``allow_identifiers`` does not name
    (:func:`~koble.registries.identifiers.scan.refuse_identifiers`)."""
    from koble.files import OutputSet
    from koble.pseudonym.operations import default_rejects_path
    from koble.pseudonym.pseudonymise import EXTRA_MESSAGES
    from koble.registries.identifiers.check import (
        dropped_zero_warnings,
        reject_messages,
        rejects_table,
    )
    from koble.registries.identifiers.column import dropped_leading_zero, validate_column
    from koble.registries.identifiers.scan import check_column_name, refuse_identifiers
    from koble.tables import read_table as read_file
    from koble.tables import require_column, require_new_column, write_table

    frame = read_file(source)
    values = require_column(frame, column, source)
    require_new_column(frame, output_column, column, "--output-column", source)
    if values.dtype != pl.String:
        raise ColumnError(
            f"identifiers must be text, the column is {values.dtype}", path=source, column=column
        )
    if output_column is not None:
        check_column_name(output_column, "--output-column")
    refuse_identifiers(frame, skip=[column], allowed=allow_identifiers, path=source)
    result = client.pseudonymise(
        values, domain=domain, scheme=id_scheme, partial=True, test_numbers=test_numbers
    )
    good = result["reason"].is_null()
    table = frame.filter(good).with_columns(result["pseudonym"].filter(good).alias(column))
    rejects_path = rejects or default_rejects_path(output)
    known = reject_messages(EXTRA_MESSAGES)
    messages = {r: known.get(r, r) for r in result["reason"].drop_nulls().unique().to_list()}
    dropped = None  # the rejects say where a spreadsheet may have dropped a leading zero
    if id_scheme == "fnr":
        dropped = dropped_leading_zero(validate_column(values, test_numbers=test_numbers))
    with OutputSet() as outputs:  # both or neither; the output last
        bad = rejects_table(frame, result["reason"], messages, dropped_zero=dropped)
        write_table(bad, rejects_path, outputs=outputs)
        write_table(table.rename({column: output_column or column}), output, outputs=outputs,
                    last=True)  # fmt: skip
    return {
        "rows": frame.height,
        "pseudonymised": table.height,
        "rejected": frame.height - table.height,
        "domain": domain,
        "output": str(output),
        "rejects_path": str(rejects_path),
        "reconciled": frame.height == table.height + int((~good).sum()),
        "warnings": dropped_zero_warnings(dropped),  # as ``koble ids check`` warns
    }
