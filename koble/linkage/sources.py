"""Where each party's own data live for a local run (the job never says: parties hold them).

A sources file (TOML, paths relative to it)::

    [operator]
    identity_history = "identity_history.parquet"   # optional: old id → current id

    [ttp]
    identity_history = "identity_history.parquet"   # optional; defaults to the operator's

    [registries.npr]
    file = "npr.parquet"
    id_column = "fnr"               # fødselsnummer, or the registry pseudonym column
    date_column = "start_date"      # the column the approved period applies to
    consent_column = "consent"      # consent-based registries: true where consent covers use

    [registries.reseptregisteret]       # a pseudonymous registry's feed, still with fnr
    file = "feeds/reseptregisteret.parquet"
    ingest = true                       # sealed ingest at the TTP before the job's steps
    id_column = "fnr"                   # the feed's fødselsnummer column (fnr or *_fnr)
    other_id_columns = { prescriber_hpr = "hpr" }   # more identifiers: column = scheme
    date_column = "dispensing_date"

A registry is named by its catalogue id or by the alias a job may use for it
(``quality_registry`` for ``hoftebruddregisteret``), as in job files.

:func:`synthetic_sources` gives the sources of a world made by ``koble synth``; its
pseudonymous registries (Reseptregisteret, IPLOS) arrive as feeds with fødselsnummer and
are loaded through sealed ingest at the TTP before the job (``ingest = true``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koble.errors import FileFormatError, UsageError
from koble.files import read_text
from koble.linkage.job_model import SYNTHETIC_ALIASES
from koble.pseudonym.ingest import PSEUDONYM_SUFFIX

__all__ = ["RegistrySource", "Sources", "load_sources", "registry_id", "synthetic_sources"]


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


@dataclass(frozen=True)
class Sources:
    registries: Mapping[str, RegistrySource]
    operator_history: Path | None = None
    ttp_history: Path | None = None
    population_dir: Path | None = None

    def get(self, registry: str) -> RegistrySource:
        """The source of ``registry`` (a catalogue id, or an alias a job may use for it)."""
        try:
            return self.registries[registry_id(registry)]
        except KeyError:
            known = ", ".join(sorted(self.registries)) or "none"
            raise UsageError(
                f"no data source for registry {registry!r}; sources cover: {known}"
            ) from None


_WORLD: dict[str, tuple[str, str, str | None, str | None]] = {
    "npr": ("npr.parquet", "fnr", "start_date", None),
    "dodsarsaksregisteret": ("dar.parquet", "fnr", "death_date", None),
    "kreftregisteret": ("kreftregisteret.parquet", "fnr", "diagnosis_date", None),
    "mfr": ("mfr.parquet", "mother_fnr", "birth_date", None),
    "hoftebruddregisteret": ("quality_registry.parquet", "fnr", "procedure_date", "consent"),
    "ssb-utdanning": ("ssb_education.parquet", "fnr", "year", None),
    "ssb-inntekt": ("ssb_income.parquet", "fnr", "year", None),
    "abortregisteret": ("abortregisteret.parquet", "", "year", None),
}
_FEEDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "reseptregisteret": (
        "feeds/reseptregisteret.parquet",
        "dispensing_date",
        {"fnr": "fnr", "prescriber_hpr": "hpr"},
    ),
    "iplos": ("feeds/iplos.parquet", "start_date", {"fnr": "fnr"}),
}


def synthetic_sources(world: Path) -> Sources:
    """The sources of a ``koble synth`` world at ``world``."""
    registries = {
        reg: RegistrySource(reg, world / file, id_col, date, consent)
        for reg, (file, id_col, date, consent) in _WORLD.items()
    }
    for reg, (file, date, ids) in _FEEDS.items():
        registries[reg] = RegistrySource(
            reg, world / file, "fnr_pseudonym", date, ingest=True, id_columns=ids
        )
    history = world / "identity_history.parquet"
    return Sources(registries, history, history, world)


def registry_id(name: str) -> str:
    """The catalogue id a registry name stands for: jobs and sources files may name a
    registry by its id or by the synthetic world's alias (``quality_registry``)."""
    key = name.strip().casefold()
    return SYNTHETIC_ALIASES.get(key, key)


_KEYS = frozenset(
    {"file", "id_column", "date_column", "consent_column", "ingest", "other_id_columns"}
)
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
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise FileFormatError(f"not valid TOML: {exc}", path=path) from None
    base = path.parent
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
        if name != "registries" and set(table) - {"identity_history"}:
            names = ", ".join(f"{name}.{k}" for k in sorted(set(table) - {"identity_history"}))
            raise FileFormatError(f"unknown key(s) {names}; use identity_history", path=path)
    op = _str(tables["operator"], "identity_history", "operator", path, required=False)
    ttp = _str(tables["ttp"], "identity_history", "ttp", path, required=False)
    registries: dict[str, RegistrySource] = {}
    named: dict[str, str] = {}
    for name, spec in tables["registries"].items():
        where = f"registries.{name}"
        if not isinstance(spec, Mapping):
            raise FileFormatError(f"[{where}] must be a table", path=path)
        unknown_keys = sorted(set(spec) - _KEYS)
        if unknown_keys:
            names = ", ".join(f"{where}.{k}" for k in unknown_keys)
            raise FileFormatError(f"unknown key(s) {names}", path=path)
        reg = registry_id(name)
        if reg in named:
            raise FileFormatError(
                f"[{where}] is registry {reg!r}, already given as [registries.{named[reg]}]",
                path=path,
            )
        named[reg] = name
        file = _str(spec, "file", where, path, required=True)
        id_column = _str(spec, "id_column", where, path, required=True)
        assert file is not None and id_column is not None
        ingest = spec.get("ingest", False)
        if not isinstance(ingest, bool):
            raise FileFormatError(f"{where}.ingest must be true or false", path=path)
        if "other_id_columns" in spec and not ingest:
            raise FileFormatError(f"{where}.other_id_columns needs ingest = true", path=path)
        id_columns = _ingest_columns(spec, id_column, where, path) if ingest else {}
        registries[reg] = RegistrySource(
            reg,
            base / file,
            id_column + PSEUDONYM_SUFFIX if ingest else id_column,  # the loaded table's key
            _str(spec, "date_column", where, path, required=False),
            _str(spec, "consent_column", where, path, required=False),
            ingest=ingest,
            id_columns=id_columns,
        )
    op_path = None if op is None else base / op
    return Sources(registries, op_path, base / ttp if ttp else op_path, base)
