"""The registries a job requests, read and validated: each ``[registries.<id>]`` table's
approval, period, variables and ``recover`` (:func:`read_requests`), the variables checked
against what each registry offers (:func:`read_schemas`: the job's ``[schemas]`` and
``schema_file`` over the data holders' own).

Problems go to the :class:`~koble.linkage.job_reader.JobReader`, each at its line; the rest
of the job file is read in :mod:`koble.linkage.job`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from koble.errors import UsageError
from koble.linkage.job_model import APPROVAL_KINDS, Approval, Request, valid_variable_name
from koble.linkage.job_reader import JobReader
from koble.linkage.sources import registry_id, synthetic_schemas
from koble.registries.catalogue import Registry

__all__ = ["read_requests", "read_schemas"]

_FIRST_YEAR, _LAST_YEAR = 1900, 2100
_REQUEST_KEYS: Final = {"approval", "variables", "period", "recover"}


def _schema_table(
    reader: JobReader, value: object, line: int, label: str
) -> dict[str, tuple[str, ...]]:
    schemas: dict[str, tuple[str, ...]] = {}
    if not isinstance(value, Mapping):
        reader.problem(line, f"{label} must be a table of registry = [variables]")
        return schemas
    for key, names in value.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            reader.problem(line, f"{label}: {key!r} must be a list of variable names")
            continue
        schemas[registry_id(key)] = tuple(names)
    return schemas


def read_schemas(
    reader: JobReader,
    data: Mapping[str, Any],
    base: Path | None,
    offered: Mapping[str, tuple[str, ...]] | None,
) -> dict[str, Any]:
    """The variables each registry offers: the job's own ``[schemas]`` and ``schema_file``
    over ``offered`` (the data holders'; a synthetic world's when not given)."""
    schemas = dict(synthetic_schemas() if offered is None else offered)
    file = data.get("schema_file")
    if file is not None:
        line = reader.at.line("schema_file")
        if not isinstance(file, str):
            reader.problem(line, "schema_file must be a path")
        else:
            target = (base / file) if base is not None else Path(file)
            try:
                loaded = tomllib.loads(target.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                reader.problem(line, f"cannot read schema_file {file!r}: {exc}")
            else:
                schemas.update(_schema_table(reader, loaded, line, f"schema_file {file!r}"))
    if "schemas" in data:
        schemas.update(_schema_table(reader, data["schemas"], reader.at.line("schemas"), "schemas"))
    return schemas


def _approval(reader: JobReader, value: object, key: str) -> Approval | None:
    line = reader.at.line("registries", key, "approval")
    hint = 'approval = { kind = "rek" | "helsedataservice" | "registry", reference = "..." }'
    if value is None:
        reader.problem(line, f"registry {key!r}: no approval; give {hint}")
        return None
    if not isinstance(value, Mapping):
        reader.problem(line, f"registry {key!r}: approval must be {hint}")
        return None
    kind, reference = value.get("kind"), value.get("reference")
    ok = True
    if kind not in APPROVAL_KINDS:
        reader.problem(
            line,
            f"registry {key!r}: approval kind {kind!r} is not one of {', '.join(APPROVAL_KINDS)}",
        )
        ok = False
    if not isinstance(reference, str) or not reference.strip():
        reader.problem(line, f"registry {key!r}: approval has no reference")
        ok = False
    if not ok:
        return None
    assert isinstance(reference, str)
    return Approval(kind, reference.strip())  # type: ignore[arg-type]


def _period(reader: JobReader, value: object, key: str) -> tuple[int, int] | None:
    line = reader.at.line("registries", key, "period")
    if value is None:
        reader.problem(
            line, f"registry {key!r}: no period; give period = {{ start = YYYY, end = YYYY }}"
        )
        return None
    if not isinstance(value, Mapping) or set(value) != {"start", "end"}:
        reader.problem(line, f"registry {key!r}: period must be {{ start = YYYY, end = YYYY }}")
        return None
    start, end = value["start"], value["end"]
    bad = [
        name
        for name, year in (("start", start), ("end", end))
        if not isinstance(year, int)
        or isinstance(year, bool)
        or not _FIRST_YEAR <= year <= _LAST_YEAR
    ]
    if bad:
        reader.problem(
            line,
            f"registry {key!r}: period {' and '.join(bad)} must be a year between "
            f"{_FIRST_YEAR} and {_LAST_YEAR}",
        )
        return None
    if start > end:
        reader.problem(line, f"registry {key!r}: period starts ({start}) after it ends ({end})")
        return None
    return start, end


def _variables(
    reader: JobReader, value: object, key: str, schema: tuple[str, ...] | None
) -> tuple[str, ...]:
    line = reader.at.line("registries", key, "variables")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        reader.problem(line, f"registry {key!r}: variables must be a non-empty list of names")
        return ()
    known = {v.casefold(): v for v in schema} if schema is not None else None
    out: list[str] = []
    seen: set[str] = set()
    for name in value:
        at = reader.at.value(name, "registries", key, "variables")
        if not valid_variable_name(name):
            reader.problem(
                at,
                f"registry {key!r}: variable {name!r} is not a valid name "
                "(A-Z, 0-9, _, not starting with a digit, at most 32 characters)",
            )
            continue
        if name.casefold() in seen:
            reader.problem(at, f"registry {key!r}: variable {name!r} listed twice")
            continue
        seen.add(name.casefold())
        if known is None:
            continue
        if name.casefold() not in known:
            reader.problem(
                at,
                f"registry {key!r}: unknown variable {name!r}; the schema has "
                f"{', '.join(schema or ())}",
            )
            continue
        out.append(known[name.casefold()])
    if known is None:
        reader.problem(
            line,
            f"registry {key!r}: no variable schema; declare its variables in [schemas] or a "
            "schema_file",
        )
    return tuple(out)


def read_requests(
    reader: JobReader, data: Mapping[str, Any], schemas: Mapping[str, tuple[str, ...]]
) -> list[tuple[Request, Registry]]:
    table = reader.table(data, "registries", required=True)
    if not table and "registries" in data:
        reader.problem(reader.at.line("registries"), "no registries requested")
    out: list[tuple[Request, Registry]] = []
    seen: dict[str, str] = {}
    for key, spec in table.items():
        line = reader.at.line("registries", key)
        if not isinstance(spec, Mapping):
            reader.problem(line, f"registry {key!r} must be a table [registries.{key}]")
            continue
        try:
            entry = reader.catalogue.get(registry_id(key))
        except UsageError as exc:
            reader.problem(line, str(exc))
            continue
        if entry.id in seen:
            reader.problem(line, f"registry {key!r} is {entry.id!r}, already requested as "
                           f"{seen[entry.id]!r}")  # fmt: skip
            continue
        seen[entry.id] = key
        reader.unknown_keys(spec, set(_REQUEST_KEYS), "registries", key)
        approval = _approval(reader, spec.get("approval"), key)
        period = _period(reader, spec.get("period"), key)
        variables = _variables(reader, spec.get("variables"), key, schemas.get(entry.id))
        recover = _request_recover(reader, spec.get("recover", False), key, entry)
        if approval is not None and period is not None and variables and recover is not None:
            request = Request(entry.id, variables, *period, approval, line, recover=recover)
            out.append((request, entry))
    return out


def _request_recover(reader: JobReader, value: object, key: str, entry: Registry) -> bool | None:
    """A request's ``recover``: true for a registry whose own records lack usable numbers
    (it sends them to the TTP to be resolved); only an identifiable registry, which is
    keyed by fødselsnummer, can use what the TTP returns. None after a problem."""
    line = reader.at.line("registries", key, "recover")
    if not isinstance(value, bool):
        reader.problem(line, f"registry {key!r}: recover must be true or false")
        return None
    if value and entry.identity_model != "identifiable":
        reader.problem(
            line,
            f"registry {key!r}: recover = true needs a registry keyed by fødselsnummer; "
            f"{entry.id} is {entry.identity_model}",
        )
        return None
    return value
