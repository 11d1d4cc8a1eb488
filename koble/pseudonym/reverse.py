"""Going back: authorised re-identification, and re-keying to the primary key.

Re-identification turns pseudonyms back into identifiers. It needs an
:class:`Authorisation`: an actor in the re-identification role, a stated reason and a legal
basis; without them it is refused with :class:`~koble.errors.AuthorisationError`. Whether
granted or refused, the attempt is recorded in the audit sink the caller passes in (the
TTP's audit log), with counts, reason and legal basis, never identifiers. An actor, reason
or legal basis the log would refuse (it holds a person number, or a run that looks like key
material) refuses the attempt too, and the refusal is recorded with that field replaced by
:data:`WITHHELD` (or :data:`WITHHELD_KEY_LIKE`): a refused attempt is never left unrecorded
because of what the caller typed.

Re-keying converts pseudonyms made with an older key version into pseudonyms under the
primary key. The identifiers exist only as blocks in this process's memory between one AES
call and the next; they are never formatted, returned or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.errors import AuthorisationError, UsageError
from koble.pseudonym import scheme
from koble.pseudonym.audit_guard import contains_person_number, refuse_sensitive
from koble.pseudonym.auditing import AuditSink, Detail
from koble.pseudonym.keys import Keyset, KeyStatus, check_domain

__all__ = [
    "REIDENTIFICATION_ROLE",
    "WITHHELD",
    "WITHHELD_KEY_LIKE",
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
#: What a refused attempt's audit event holds instead of a field the log would refuse.
WITHHELD = "<withheld: held a person number>"
WITHHELD_KEY_LIKE = "<withheld: looked like key material>"


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

    def recorded(self) -> tuple[str, dict[str, Detail], list[str]]:
        """The actor and details as the audit log may hold them, and a problem for each field
        it would refuse: such a field is replaced by :data:`WITHHELD` (a person number) or
        :data:`WITHHELD_KEY_LIKE` (a long hex or base64 run), never echoed."""
        fields = {"actor": self.actor.strip() or "(none)", "role": self.role,
                  "reason": self.reason, "legal_basis": self.legal_basis}  # fmt: skip
        problems: list[str] = []
        for name, value in fields.items():
            label = name.replace("_", " ")
            if contains_person_number(value):
                fields[name] = WITHHELD
                problems.append(f"the {label} must not hold a person number (withheld from the "
                                "audit log)")  # fmt: skip
                continue
            try:
                refuse_sensitive(name, value)
            except UsageError:
                fields[name] = WITHHELD_KEY_LIKE
                problems.append(f"the {label} must not hold a long run that looks like key "
                                "material (withheld from the audit log)")  # fmt: skip
        details: dict[str, Detail] = {
            "role": fields["role"], "reason": fields["reason"],
            "legal_basis": fields["legal_basis"],
        }  # fmt: skip
        return fields["actor"], details, problems


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
    """Identifiers behind ``pseudonyms``, for an authorised officer only; always audited,
    a refusal included (with any field the log would refuse withheld, an invalid domain too)."""
    actor, details, withheld = authorisation.recorded()
    problems = authorisation.problems() + withheld
    recorded_domain: str | None = domain
    try:
        check_domain(domain)
    except UsageError as invalid:
        if not problems:
            raise  # an authorised request that names no valid domain: nothing was attempted
        recorded_domain = None
        problems.append(f"{invalid.message} (withheld from the audit log)")
    if problems:
        audit.append(
            actor=actor,
            operation="reidentify-refused",
            domain=recorded_domain,
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
