"""The registry catalogue: which registries exist, who controls them, and how they may be linked.

The bundled catalogue (``koble/registries/data/catalogue/*.toml``) describes every data source
in seed 003 (helsedata.no's list) and the central registries seeds 000, 002 and 004 name that
003 lacks. Each entry's classified fields come with a verbatim quote from a seed, and the
loader checks every quote against the shipped seed copies (:mod:`.catalogue_seeds`). Users add
their own registries in the same format with :meth:`Catalogue.from_file` and
:meth:`Catalogue.extended`.

File format: a TOML file with an array of ``[[registry]]`` tables::

    [[registry]]
    id = "bdr"                                  # stable slug
    name = "Barnediabetesregisteret"
    short = "BDR"                               # optional
    kind = "medical-quality-register"
    owner = "Oslo universitetssykehus HF"       # data controller, as the seed says
    legal_basis = "helseregisterloven § 7"
    identity_model = "identifiable"
    consent_required = false                    # true / false / "unknown"
    anonymous_output = "unknown"
    identifier = "unknown"
    linkage_by = "unknown"
    period = { start = "unknown", end = "unknown" }   # years, "present" or "unknown"
    source = { seed = "003_b1715e3ea426f77a.txt", quote = "Barnediabetesregisteret (BDR)" }
    [registry.evidence]                         # one quote per classified field
    identity_model = "uten krav om samtykke fra den registrerte"
    legal_basis = { seed = "002_b24c1a5496a57375.txt", quote = "..." }  # from another seed

    [registry.evidence.period]                  # or a legal source: cited, not quoted
    law = "helseregisterloven 2014 (LOV-2014-06-20-43)"
    section = "§ 7"
    url = "https://lovdata.no/..."
    checked = 2026-11-01

Optional, per entry: ``[[registry.regimes]]`` (the identity model per period of data years),
``continued_by`` (the registry holding the data from a year on), ``[[registry.reservations]]``
(what persons may opt out of) and ``[registry.unknown]`` (why a value is unknown); a file may
also hold ``[[amend]]`` tables adding such facts to entries of other files (``law.toml``).
All of it is described in ``koble/registries/data/catalogue/README.md``.

Every problem in a file (missing field, bad value, duplicate id, quote not in its seed, a
malformed legal source, overlapping regimes) is reported at once in one
:class:`CatalogueError` naming the file, the entry and the key.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import hashlib
import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from koble.errors import FileFormatError, UsageError
from koble.files import read_text
from koble.registries.catalogue_amend import Raw, apply_amendments
from koble.registries.catalogue_model import (
    IDENTITY_MODELS,
    KINDS,
    UNKNOWN,
    Evidence,
    Registry,
    Segment,
    Source,
)
from koble.registries.catalogue_parse import parse_registry
from koble.registries.catalogue_seeds import bundled_seeds

__all__ = ["Catalogue", "CatalogueError", "Registry"]

_PACKAGE = "koble.registries.data.catalogue"
_FIRST_YEAR, _LAST_YEAR = 1800, 2100
_BUNDLED = "<bundled>"


class CatalogueError(FileFormatError):
    """A catalogue file with problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], *, path: str | Path | None = None) -> None:
        self.problems = tuple(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"registry catalogue has {count}: " + "; ".join(problems), path=path)


def _read_toml(
    text: str, label: str, problems: list[str]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The ``[[registry]]`` and ``[[amend]]`` tables of one file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{label}: not valid TOML: {exc}")
        return [], []
    for key in sorted(set(data) - {"registry", "amend"}):
        problems.append(
            f"{label}: unknown top-level key {key!r} (entries go in [[registry]], "
            "additions to them in [[amend]])"
        )
    out: list[list[Mapping[str, Any]]] = []
    for key in ("registry", "amend"):
        tables = data.get(key, [])
        if not isinstance(tables, list) or not all(isinstance(e, Mapping) for e in tables):
            problems.append(f"{label}: {key!r} must be an array of tables ([[{key}]])")
            tables = []
        out.append(tables)
    return out[0], out[1]


def _parse_all(
    files: Iterable[tuple[str, str]], *, bundled: bool
) -> tuple[list[Registry], list[str]]:
    """Parse (label, text) pairs, amendments applied; ids must be unique across them."""
    problems: list[str] = []
    entries: list[Registry] = []
    seen: dict[str, str] = {}
    raws: list[Raw] = []
    amendments: list[Raw] = []
    for label, text in files:
        tables, amends = _read_toml(text, label, problems)
        raws += [(label, raw) for raw in tables]
        amendments += [(label, amend) for amend in amends]
    if amendments:
        raws = apply_amendments(raws, amendments, problems)
    for number, (label, raw) in enumerate(raws, start=1):
        ident = raw.get("id")
        where = (
            f"{label}: registry {ident!r}"
            if isinstance(ident, str)
            else (f"{label}: registry #{number}")
        )
        before = len(problems)
        entry = parse_registry(raw, where, problems, need_evidence=bundled)
        if bundled:
            _check_quotes(entry, where, problems)
        if isinstance(ident, str) and ident in seen:
            problems.append(f"{where}: duplicate id (also in {seen[ident]})")
        elif isinstance(ident, str):
            seen[ident] = label
        if len(problems) == before:
            entries.append(entry)
    return entries, problems


def _check_quotes(entry: Registry, where: str, problems: list[str]) -> None:
    """Every seed passage the entry cites occurs in its seed (legal sources are cited, not
    quoted: their form is checked when read)."""
    seeds = bundled_seeds()
    sources: list[tuple[str, Source]] = [("source", entry.source)]
    sources += [(f"evidence.{name}", ev) for name, ev in sorted(entry.evidence.items())]
    sources += [(f"part {part.name!r}", part.evidence) for part in entry.parts]
    sources += [(f"regimes {n}", r.evidence) for n, r in enumerate(entry.regimes, start=1)]
    sources += [(f"reservations {n}", r.evidence) for n, r in enumerate(entry.reservations, 1)]
    if entry.continued_by is not None:
        sources.append(("continued_by", entry.continued_by.evidence))
    for label, evidence in sources:
        if not isinstance(evidence, Evidence) or evidence.quote == UNKNOWN:
            continue  # a missing source, already reported
        seed = seeds.get(evidence.seed)
        if seed is None:
            problems.append(f"{where}: {label} cites unknown seed {evidence.seed!r}")
        elif not seed.contains(evidence.quote):
            problems.append(
                f"{where}: {label} quote not found in {evidence.seed}: {evidence.quote[:60]!r}"
            )


class Catalogue:
    """An immutable set of registries with unique ids, iterated in id order."""

    def __init__(self, entries: Iterable[Registry]) -> None:
        by_id: dict[str, Registry] = {}
        for entry in entries:
            if entry.id in by_id:
                raise UsageError(f"duplicate registry id {entry.id!r}")
            by_id[entry.id] = entry
        self._by_id = dict(sorted(by_id.items()))

    # --- construction -------------------------------------------------------------------
    @classmethod
    def load(cls) -> Catalogue:
        """The bundled catalogue, validated (quotes included) on first use and cached."""
        return _bundled()

    @classmethod
    def from_file(cls, path: str | Path) -> Catalogue:
        """A user catalogue in the bundled format. Evidence quotes are optional here (there
        is no seed to check them against), but the ``source`` of each entry is required."""
        path = Path(path)
        text = read_text(path)
        entries, problems = _parse_all([(str(path), text)], bundled=False)
        if not entries and not problems:
            problems.append(f"{path}: no [[registry]] entries")
        if problems:
            raise CatalogueError(problems)
        return cls(entries)

    def extended(self, other: Catalogue) -> Catalogue:
        """This catalogue plus ``other``'s entries.

        An id present in both is refused, unless the bundled entry's identity model is
        unknown: then ``other`` supplies the facts the seeds lack (the planner asks for
        exactly that), and its entry replaces the bundled one.
        """
        clashes = sorted(
            ident for ident in set(self._by_id) & set(other._by_id)
            if self._by_id[ident].identity_model != "unknown"
        )  # fmt: skip
        if clashes:
            raise UsageError(
                f"registry id{'s' if len(clashes) > 1 else ''} {', '.join(clashes)} already in "
                "the catalogue with a known identity model; give your registr"
                f"{'ies' if len(clashes) > 1 else 'y'} a different id"
            )
        replaced = set(other._by_id)
        merged = Catalogue([*(e for e in self if e.id not in replaced), *other])
        problems = merged._dangling()
        if problems:
            raise CatalogueError(problems)
        return merged

    # --- queries ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Registry]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, ident: object) -> bool:
        return ident in self._by_id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def get(self, ident: str) -> Registry:
        """The registry with this id (case-insensitive); unknown ids get close matches."""
        key = ident.strip().casefold()
        if key in self._by_id:
            return self._by_id[key]
        names = {e.id: e.id for e in self}
        names.update({e.short.casefold(): e.id for e in self if e.short})
        names.update({e.name.casefold(): e.id for e in self})
        if key in names:
            hint = f"; did you mean {names[key]}?"
        else:
            close = difflib.get_close_matches(key, list(names), n=5, cutoff=0.6)
            matches = list(dict.fromkeys(names[c] for c in close))
            hint = (
                f"; did you mean {', '.join(matches)}?"
                if matches
                else "; see `koble registries list`"
            )
        raise UsageError(f"unknown registry {ident!r}{hint}")

    def filter(
        self, *, model: str | None = None, kind: str | None = None
    ) -> builtins.list[Registry]:
        """Entries whose identity model (or one of its parts') is ``model`` and of ``kind``."""
        if model is not None and model not in IDENTITY_MODELS:
            raise UsageError(f"unknown identity model {model!r}; use {', '.join(IDENTITY_MODELS)}")
        if kind is not None and kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}; use {', '.join(KINDS)}")
        return [
            e
            for e in self
            if (model is None or model in e.models) and (kind is None or e.kind == kind)
        ]

    def list(self, model: str | None = None, year: int | None = None) -> builtins.list[Registry]:
        """Entries whose identity model in force for data year ``year`` is ``model``.

        Without ``year``, :meth:`filter` (the current model, parts included). With ``year``,
        only entries with a regime in force that year (not before their data start, not after
        a successor took over); the current regime's parts count too."""
        if year is None:
            return self.filter(model=model)
        self.filter(model=model)  # validates model
        if not _FIRST_YEAR <= year <= _LAST_YEAR:
            raise UsageError(f"year must be between {_FIRST_YEAR} and {_LAST_YEAR}")
        out = []
        for entry in self:
            regime = entry.regime_for(year)
            if regime is None:
                continue
            models = {regime.identity_model}
            if regime == entry.all_regimes[-1]:  # equal: an implicit regime is rebuilt
                models |= {p.identity_model for p in entry.parts}
            if model is None or model in models:
                out.append(entry)
        return out

    def segments(self, ident: str, start: int, end: int) -> builtins.list[Segment]:
        """Data years ``start``–``end`` of registry ``ident`` cut at its regimes and handed on
        to its successors (Reseptregisteret 2015–2024 → Reseptregisteret 2015–2021 +
        Legemiddelregisteret 2022–2024). The segments partition the range exactly."""
        if end < start:
            raise UsageError("the period's end year is before its start year")
        entry = self.get(ident)
        return self._expand(entry, start, end, (entry.id,))

    def _expand(
        self, entry: Registry, start: int, end: int, chain: tuple[str, ...]
    ) -> builtins.list[Segment]:
        out: builtins.list[Segment] = []
        for segment in entry.segments(start, end):
            if segment.registry_id == entry.id:
                out.append(segment)
            elif segment.registry_id in chain or segment.registry_id not in self._by_id:
                why = f"{entry.id}'s successor {segment.registry_id!r} cannot be followed"
                out.append(dataclasses.replace(segment, reason=why))
            else:
                successor = self._by_id[segment.registry_id]
                out += self._expand(successor, segment.start, segment.end, (*chain, successor.id))
        return out

    @property
    def version(self) -> str:
        """``sha256:<hex>`` over the entries' content (not the files' layout), for manifests."""
        payload = json.dumps([e.to_dict() for e in self], sort_keys=True, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_dicts(self) -> builtins.list[dict[str, Any]]:
        return [e.to_dict() for e in self]

    def _dangling(self) -> builtins.list[str]:
        problems = [
            f"registry {e.id!r}: see_also names unknown registry {ref!r}"
            for e in self
            for ref in e.see_also
            if ref not in self._by_id
        ]
        problems += [
            f"registry {e.id!r}: continued_by names unknown registry {e.continued_by.registry!r}"
            for e in self
            if e.continued_by is not None and e.continued_by.registry not in self._by_id
        ]
        return problems

    def __repr__(self) -> str:
        return f"Catalogue({len(self)} registries, {self.version[:19]})"


@cache
def _bundled() -> Catalogue:
    files = sorted(
        (item for item in resources.files(_PACKAGE).iterdir() if item.name.endswith(".toml")),
        key=lambda item: item.name,
    )
    entries, problems = _parse_all(
        ((f"catalogue/{item.name}", item.read_text(encoding="utf-8")) for item in files),
        bundled=True,
    )
    if not files:
        problems.append("no bundled catalogue files found (is the package data installed?)")
    catalogue = Catalogue(entries) if not problems else None
    if catalogue is not None:
        problems += catalogue._dangling()
    if problems or catalogue is None:
        raise CatalogueError(problems)
    return catalogue
