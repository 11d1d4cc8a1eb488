"""Going back: authorised re-identification, and re-keying to the primary key.

Re-identification turns pseudonyms back into identifiers. It needs an
:class:`Authorisation`: an actor in the re-identification role, a stated reason and a legal
basis; without them it is refused with :class:`~koble.errors.AuthorisationError`. Whether
granted or refused, the attempt is recorded in the audit sink the caller passes in (the
TTP's audit log), with counts, reason and legal basis, never identifiers.

Re-keying converts pseudonyms made with an older key version into pseudonyms under the
primary key. The identifiers exist only as blocks in this process's memory between one AES
call and the next; they are never formatted, returned or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.errors import AuthorisationError
from koble.pseudonym import scheme
from koble.pseudonym.auditing import AuditSink, Detail
from koble.pseudonym.keys import Keyset, KeyStatus, check_domain

__all__ = [
    "REIDENTIFICATION_ROLE",
    "Authorisation",
    "Reversed",
    "reidentify",
    "rekey",
]

REIDENTIFICATION_ROLE = "reidentification-officer"
MALFORMED = "malformed_pseudonym"
UNKNOWN_KEY = "key_not_usable"
NOT_REVERSIBLE = "not_reversible"
MESSAGES = {
    MALFORMED: "not a pseudonym (36 lowercase hex characters expected)",
    UNKNOWN_KEY: "made with a key version that is missing, disabled or destroyed",
    NOT_REVERSIBLE: "not a pseudonym of this domain and keyset",
}
MIN_TEXT = 10


@dataclass(frozen=True)
class Authorisation:
    """Who asks to re-identify, in which role, why, and under which legal basis."""

    actor: str
    role: str
    reason: str
    legal_basis: str

    def problems(self) -> list[str]:
        found = []
        if not self.actor.strip():
            found.append("no actor")
        if self.role != REIDENTIFICATION_ROLE:
            found.append(f"role must be {REIDENTIFICATION_ROLE!r}")
        if len(self.reason.strip()) < MIN_TEXT:
            found.append(f"a reason of at least {MIN_TEXT} characters is required")
        if len(self.legal_basis.strip()) < MIN_TEXT:
            found.append(f"a legal basis of at least {MIN_TEXT} characters is required")
        return found


@dataclass(frozen=True)
class Reversed:
    """Per input row: the value (identifier or new pseudonym) or null, and the reason when null."""

    values: pl.Series
    reason: pl.Series

    @property
    def ok(self) -> int:
        return int(self.reason.null_count())


def _open(
    keyset: Keyset, domain: str, pseudonyms: pl.Series, id_scheme: scheme.IdScheme
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.intp], scheme.Blocks]:
    """Decrypt every reversible pseudonym; return per-row codes, their rows and plain blocks."""
    n = len(pseudonyms)
    code = np.full(n, 0, dtype=np.int8)  # 0 ok, 1 malformed, 2 unknown key, 3 not reversible
    well_formed, versions, cipher = scheme.parse_pseudonyms(pseudonyms.cast(pl.String))
    code[~well_formed] = 1
    rows = np.flatnonzero(well_formed)
    plain = np.zeros_like(cipher)
    usable = {i.version for i in keyset.keys if i.status is KeyStatus.ENABLED}
    for version in np.unique(versions).tolist():
        picked = versions == version
        if version not in usable:
            code[rows[picked]] = 2
            continue
        plain[picked] = scheme.decrypt(keyset._domain_key(version, domain), cipher[picked])
    _, genuine = scheme.decode(plain, id_scheme)
    code[rows[(code[rows] == 0) & ~genuine]] = 3
    keep = code[rows] == 0
    return code, rows[keep], plain[keep]


def _reasons(code: npt.NDArray[np.int8]) -> pl.Series:
    names = pl.Series([None, MALFORMED, UNKNOWN_KEY, NOT_REVERSIBLE], dtype=pl.String)
    return names.gather(code.astype(np.uint32)).alias("reason")


def _scatter(n: int, rows: npt.NDArray[np.intp], values: pl.Series) -> pl.Series:
    out = pl.Series(values.name, [None] * n, dtype=pl.String)
    return out.scatter(rows, values) if len(rows) else out


def reidentify(
    keyset: Keyset,
    domain: str,
    pseudonyms: pl.Series,
    authorisation: Authorisation,
    audit: AuditSink,
    *,
    id_scheme: scheme.IdScheme = "fnr",
) -> Reversed:
    """Identifiers behind ``pseudonyms``, for an authorised officer only; always audited."""
    check_domain(domain)
    problems = authorisation.problems()
    details: dict[str, Detail] = {
        "role": authorisation.role,
        "reason": authorisation.reason,
        "legal_basis": authorisation.legal_basis,
    }
    if problems:
        audit.append(
            actor=authorisation.actor.strip() or "(none)",
            operation="reidentify-refused",
            domain=domain,
            rows_in=len(pseudonyms),
            details={**details, "problems": "; ".join(problems)},
        )
        raise AuthorisationError("re-identification refused: " + "; ".join(problems))
    code, rows, plain = _open(keyset, domain, pseudonyms, id_scheme)
    identifiers, _ = scheme.decode(plain, id_scheme)
    result = Reversed(_scatter(len(pseudonyms), rows, identifiers), _reasons(code))
    audit.append(
        actor=authorisation.actor,
        operation="reidentify",
        domain=domain,
        rows_in=len(pseudonyms),
        rows_out=result.ok,
        rejected=len(pseudonyms) - result.ok,
        details=details,
    )
    return result


def rekey(
    keyset: Keyset,
    domain: str,
    pseudonyms: pl.Series,
    audit: AuditSink,
    *,
    actor: str,
    id_scheme: scheme.IdScheme = "fnr",
) -> Reversed:
    """Pseudonyms under the primary key for pseudonyms made with any enabled key version."""
    check_domain(domain)
    code, rows, plain = _open(keyset, domain, pseudonyms, id_scheme)
    primary = keyset.primary.version
    cipher = scheme.encrypt(keyset._domain_key(primary, domain), plain)
    fresh = scheme.format_pseudonyms(primary, cipher)
    result = Reversed(_scatter(len(pseudonyms), rows, fresh), _reasons(code))
    audit.append(
        actor=actor,
        operation="rekey",
        domain=domain,
        key_id=keyset.primary.key_id,
        rows_in=len(pseudonyms),
        rows_out=result.ok,
        rejected=len(pseudonyms) - result.ok,
    )
    return result
