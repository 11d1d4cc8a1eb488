"""Where each party's own data live for a local run (the job never says: parties hold them).

A sources file (TOML, paths relative to it)::

    [operator]
    identity_history = "identity_history.parquet"   # optional: old id → current id

    [ttp]
    identity_history = "identity_history.parquet"   # optional; defaults to the operator's
    register = "folkeregister"      # optional: the population register identity recovery
                                    # resolves records against (koble.recovery.contract)

    [registries.npr]
    file = "npr.parquet"
    id_column = "fnr"               # fødselsnummer, or the registry pseudonym column
    date_column = "start_date"      # the column the approved period applies to
    consent_column = "consent"      # consent-based registries: true where consent covers use
    reservations = "reservations/npr.parquet"   # the registry's opt-out table (reservation.py)

    [registries.reseptregisteret]       # a pseudonymous registry's feed, still with fnr
    file = "feeds/reseptregisteret.parquet"
    ingest = true                       # loaded by the plan's sealed ingest step first
    id_column = "fnr"                   # the feed's fødselsnummer column (fnr or *_fnr)
    other_id_columns = { prescriber_hpr = "hpr" }   # more identifiers: column = scheme
    date_column = "dispensing_date"
    variables = ["atc", "ddd", "dispensing_date"]   # optional: what the registry offers
    names = ["prescriptions"]           # optional: the data holder's own names for it

A registry is named by its catalogue id (``koble registries list``); ``names`` adds the data
holder's own names for it, which :meth:`Sources.get` accepts too. ``variables`` are the
variables the registry offers: a job run against these sources is checked against them
(:meth:`Sources.schemas`). ``id_column = false`` says a table holds no person identifier at
all (a de-identified registry, which the planner refuses).

:func:`synthetic_sources` gives the sources of a world made by ``koble synth``: the world's
own ``registries.toml`` (:mod:`koble.synth.registries`), a sources file like this one. Its
pseudonymous registries (Reseptregisteret, IPLOS) arrive as feeds with fødselsnummer and
are loaded through sealed ingest at the TTP, the plan's first step for each
(``ingest = true``, :meth:`Sources.feeds`). Its TTP's population register is its
``folkeregister/`` directory, when the world has one.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from koble.errors import ColumnError, FileFormatError, UsageError, redact
from koble.files import read_text
from koble.linkage.job_model import valid_variable_name
from koble.pseudonym.ingest import PSEUDONYM_SUFFIX
from koble.synth.registries import BUNDLED, REGISTRIES_FILE
from koble.tables import refuse_duplicate_names

__all__ = [
    "RegistrySource",
    "Sources",
    "load_sources",
    "registry_id",
    "require_columns",
    "synthetic_schemas",
    "synthetic_sources",
]


@dataclass(frozen=True)
class RegistrySource:
    """One registry's table: its file, identifier column and period column."""

    registry: str
    file: Path
    id_column: str
    date_column: str | None = None
    consent_column: str | None = None
    ingest: bool = False  # a feed with fnr the TTP must pseudonymise into the registry first
    id_columns: Mapping[str, str] = field(default_factory=dict)  # ingest: column → scheme
    #: The variables the registry offers (None: not said); jobs are checked against them.
    variables: tuple[str, ...] | None = None
    #: The registry's opt-out table (:mod:`koble.linkage.reservation`), if it keeps one.
    reservations: Path | None = None


@dataclass(frozen=True)
class Sources:
    registries: Mapping[str, RegistrySource]
    operator_history: Path | None = None
    ttp_history: Path | None = None
    population_dir: Path | None = None
    #: The data holders' own names for registries (``quality_registry``), to catalogue ids.
    names: Mapping[str, str] = field(default_factory=dict)
    #: The TTP's population register (a directory, :data:`koble.recovery.contract.
    #: REGISTER_FILES`), which identity recovery resolves records against; None: none.
    ttp_register: Path | None = None

    def get(self, registry: str) -> RegistrySource:
        """The source of ``registry`` (a catalogue id, or a name the sources give it)."""
        key = registry_id(registry)
        try:
            return self.registries[self.names.get(key, key)]
        except KeyError:
            known = ", ".join(sorted(self.registries)) or "none"
            raise UsageError(
                f"no data source for registry {registry!r}; sources cover: {known}"
            ) from None

    def schemas(self) -> dict[str, tuple[str, ...]]:
        """The variables each registry offers, by catalogue id, where the sources say."""
        return {
            reg: source.variables
            for reg, source in self.registries.items()
            if source.variables is not None
        }

    def feeds(self) -> dict[str, str]:
        """The registries loaded by sealed ingest (``ingest = true``), by catalogue id, each
        with its feed's path: what :func:`~koble.linkage.planner.plan_job` needs to plan a
        ``sealed_ingest`` step for each, the feed its declared input."""
        return {reg: str(s.file) for reg, s in sorted(self.registries.items()) if s.ingest}


def synthetic_sources(world: Path) -> Sources:
    """The sources of a ``koble synth`` world at ``world``: its ``registries.toml`` says which
    table holds which registry. A world made before koble wrote that file has the layout of
    the bundled one (:data:`koble.synth.registries.BUNDLED`), read relative to ``world``."""
    own = world / REGISTRIES_FILE
    path = own if own.is_file() else BUNDLED
    sources = _load(path, world)
    history = world / "identity_history.parquet"
    register = world / _REGISTER_DIRECTORY
    return Sources(
        sources.registries,
        history,
        history,
        world,
        sources.names,
        register if register.is_dir() else None,
    )


#: Where a synthetic world keeps the TTP's population register (koble.synth.register).
_REGISTER_DIRECTORY = "folkeregister"


@functools.cache
def _bundled_schemas() -> dict[str, tuple[str, ...]]:
    return _load(BUNDLED, BUNDLED.parent).schemas()


def synthetic_schemas() -> dict[str, tuple[str, ...]]:
    """The variables each registry of a ``koble synth`` world offers, by catalogue id: what a
    job is checked against when its data holders' own are not at hand (``koble plan``)."""
    return dict(_bundled_schemas())


def registry_id(name: str) -> str:
    """A registry name as sources and jobs compare it: trimmed, case-folded."""
    return name.strip().casefold()


_KEYS = frozenset(
    {"file", "id_column", "date_column", "consent_column", "ingest", "other_id_columns",
     "variables", "names", "reservations"}
)  # fmt: skip
_SCHEMES = ("fnr", "hpr", "orgnr")


def _ingest_columns(
    spec: Mapping[str, Any], id_column: str, where: str, path: Path
) -> dict[str, str]:
    """A feed's identifier columns and their schemes: ``id_column`` holds fødselsnummer
    (the TTP pseudonymises it into the registry's person domain, which only a column named
    ``fnr`` or ``*_fnr`` reaches), and ``other_id_columns`` adds e.g. prescriber HPR."""
    if id_column != "fnr" and not id_column.endswith("_fnr"):
        raise FileFormatError(
            f"{where}.id_column: with ingest = true it names the feed's fødselsnummer column, "
            "which must be called fnr or end in _fnr (rename it in the feed)",
            path=path,
        )
    columns = {id_column: "fnr"}
    other = spec.get("other_id_columns", {})
    if not isinstance(other, Mapping):
        raise FileFormatError(
            f"{where}.other_id_columns must be a table of column = scheme", path=path
        )
    for column, scheme in other.items():
        if scheme not in _SCHEMES:
            raise FileFormatError(
                f"{where}.other_id_columns: a scheme must be one of {', '.join(_SCHEMES)}",
                path=path,
            )
        if column in columns:
            raise FileFormatError(f"{where}.other_id_columns repeats id_column", path=path)
        columns[str(column)] = str(scheme)
    return columns


def _str(
    table: Mapping[str, Any], key: str, where: str, path: Path, *, required: bool
) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FileFormatError(f"{where}.{key} must be a non-empty string", path=path)
    return value.strip()


def load_sources(path: Path) -> Sources:
    """Read a sources file; problems name the key."""
    return _load(path, path.parent)


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise FileFormatError(f"not valid TOML: {exc}", path=path) from None


def _load(path: Path, base: Path) -> Sources:
    """The sources file at ``path``, its relative paths taken from ``base``."""
    data = _toml(path)
    unknown = sorted(set(data) - {"operator", "ttp", "registries", "world"})
    if unknown:
        raise FileFormatError(f"unknown table(s) {', '.join(unknown)}", path=path)
    if "world" in data:
        if set(data) != {"world"} or not isinstance(data["world"], str):
            raise FileFormatError(
                'world = "DIR" stands alone: a synthetic world names every party\'s data',
                path=path,
            )
        return synthetic_sources(base / data["world"])
    tables = {name: data.get(name, {}) for name in ("operator", "ttp", "registries")}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise FileFormatError(f"[{name}] must be a table", path=path)
        allowed = {"identity_history", "register"} if name == "ttp" else {"identity_history"}
        if name != "registries" and set(table) - allowed:
            names = ", ".join(f"{name}.{k}" for k in sorted(set(table) - allowed))
            raise FileFormatError(
                f"unknown key(s) {names}; use {', '.join(sorted(allowed))}", path=path
            )
    op = _str(tables["operator"], "identity_history", "operator", path, required=False)
    ttp = _str(tables["ttp"], "identity_history", "ttp", path, required=False)
    held = _str(tables["ttp"], "register", "ttp", path, required=False)
    registries: dict[str, RegistrySource] = {}
    named: dict[str, str] = {}  # every name a registry goes by -> the table that gave it
    aliases: dict[str, str] = {}
    for name, spec in tables["registries"].items():
        where = f"registries.{name}"
        if not isinstance(spec, Mapping):
            raise FileFormatError(f"[{where}] must be a table", path=path)
        unknown_keys = sorted(set(spec) - _KEYS)
        if unknown_keys:
            names = ", ".join(f"{where}.{k}" for k in unknown_keys)
            raise FileFormatError(f"unknown key(s) {names}", path=path)
        reg = registry_id(name)
        for other in (reg, *_names(spec, where, path)):
            if other in named:
                raise FileFormatError(
                    f"[{where}] names registry {other!r}, already given as "
                    f"[registries.{named[other]}]",
                    path=path,
                )
            named[other] = name
            if other != reg:
                aliases[other] = reg
        registries[reg] = _registry(spec, reg, where, path, base)
    op_path = None if op is None else base / op
    return Sources(
        registries,
        op_path,
        base / ttp if ttp else op_path,
        base,
        aliases,
        None if held is None else base / held,
    )


def _registry(
    spec: Mapping[str, Any], reg: str, where: str, path: Path, base: Path
) -> RegistrySource:
    """One ``[registries.NAME]`` entry."""
    file = _str(spec, "file", where, path, required=True)
    ingest = spec.get("ingest", False)
    if not isinstance(ingest, bool):
        raise FileFormatError(f"{where}.ingest must be true or false", path=path)
    if spec.get("id_column") is False and not ingest:
        id_column = ""  # a table without any person identifier (a de-identified registry)
    else:
        id_column = _str(spec, "id_column", where, path, required=True) or ""
    assert file is not None
    if "other_id_columns" in spec and not ingest:
        raise FileFormatError(f"{where}.other_id_columns needs ingest = true", path=path)
    id_columns = _ingest_columns(spec, id_column, where, path) if ingest else {}
    reservations = _str(spec, "reservations", where, path, required=False)
    if reservations is not None and ingest:
        raise FileFormatError(
            f"{where}.reservations: a registry loaded through sealed ingest is keyed by its "
            "pseudonym, which an opt-out table keyed by fødselsnummer cannot match",
            path=path,
        )
    return RegistrySource(
        reg,
        base / file,
        id_column + PSEUDONYM_SUFFIX if ingest else id_column,  # the loaded table's key
        _str(spec, "date_column", where, path, required=False),
        _str(spec, "consent_column", where, path, required=False),
        ingest=ingest,
        id_columns=id_columns,
        variables=_variables(spec, where, path),
        reservations=None if reservations is None else base / reservations,
    )


def _names(spec: Mapping[str, Any], where: str, path: Path) -> list[str]:
    """``names``: the data holder's own names for the registry."""
    value = spec.get("names", [])
    if not isinstance(value, list) or not all(isinstance(n, str) and n.strip() for n in value):
        raise FileFormatError(f"{where}.names must be a list of names", path=path)
    return [registry_id(n) for n in value]


def _variables(spec: Mapping[str, Any], where: str, path: Path) -> tuple[str, ...] | None:
    """``variables``: what the registry offers (design.md §1.5 names), or None if not said."""
    value = spec.get("variables")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and valid_variable_name(v) for v in value)
    ):
        raise FileFormatError(
            f"{where}.variables must be a non-empty list of variable names (A-Z, 0-9, _, "
            "not starting with a digit, at most 32 characters)",
            path=path,
        )
    return tuple(value)


def require_columns(path: Path, needed: list[str], what: str = "table") -> None:
    """Refuse a registry's Parquet ``path`` (its ``what``: table or feed) that cannot be read,
    repeats a column name or lacks one of ``needed``: exit 2, naming file and column, the
    columns it has listed (redacted), never a value. Reads the schema only."""
    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"cannot read the registry's {what}: {exc}", path=path) from None
    refuse_duplicate_names(names, path)
    for column in needed:
        if column not in names:
            raise ColumnError(
                f"the registry's {what} has no such column "
                f"(it has {redact(', '.join(names[:20]))})",
                path=path,
                column=column,
            )
