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

__all__ = ["RegistrySource", "Sources", "load_sources", "synthetic_sources"]


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
        try:
            return self.registries[registry]
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
    for reg, spec in tables["registries"].items():
        where = f"registries.{reg}"
        if not isinstance(spec, Mapping):
            raise FileFormatError(f"[{where}] must be a table", path=path)
        unknown_keys = sorted(set(spec) - {"file", "id_column", "date_column", "consent_column"})
        if unknown_keys:
            names = ", ".join(f"{where}.{k}" for k in unknown_keys)
            raise FileFormatError(f"unknown key(s) {names}", path=path)
        file = _str(spec, "file", where, path, required=True)
        id_column = _str(spec, "id_column", where, path, required=True)
        assert file is not None and id_column is not None
        registries[reg] = RegistrySource(
            reg,
            base / file,
            id_column,
            _str(spec, "date_column", where, path, required=False),
            _str(spec, "consent_column", where, path, required=False),
        )
    op_path = None if op is None else base / op
    return Sources(registries, op_path, base / ttp if ttp else op_path, base)
