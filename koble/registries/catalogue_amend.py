"""Amendments: facts from the law added to entries that another file defines from a seed.

The seed files (``003_*.toml``, ``others.toml``) record what the seeds say; ``law.toml``
records what statutes, regulations and the registry owners' pages add, as ``[[amend]]`` tables
naming an entry by ``id``. Keeping them apart keeps each value's provenance readable.

Merging, done on the raw TOML tables before an entry is parsed (so every check still runs on
the merged entry):

* a plain field (``identity_model``, ``period``, ``continued_by``, ...) replaces the entry's;
* ``evidence`` and ``unknown`` are merged key by key, the amendment winning;
* ``part``, ``regimes`` and ``reservations`` are appended.

An amendment cannot change ``id``, ``name`` or ``source`` (what the entry is), must name an
entry that exists, and must give a source for every classified field it sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from koble.registries.catalogue_model import CLASSIFIED

__all__ = ["Raw", "apply_amendments"]

#: (label of the file or files, raw table) for one entry.
Raw = tuple[str, Mapping[str, Any]]

_FIXED = ("name", "source")
_MERGED = ("evidence", "unknown")
_APPENDED = ("part", "regimes", "reservations")


def apply_amendments(entries: list[Raw], amendments: list[Raw], problems: list[str]) -> list[Raw]:
    """``entries`` with every amendment applied; problems (file, id, key) go to ``problems``."""
    index = {
        raw.get("id"): n for n, (_, raw) in enumerate(entries) if isinstance(raw.get("id"), str)
    }
    merged = list(entries)
    for number, (label, amend) in enumerate(amendments, start=1):
        ident = amend.get("id")
        where = (
            f"{label}: amend {ident!r}" if isinstance(ident, str) else f"{label}: amend #{number}"
        )
        if not isinstance(ident, str) or ident not in index:
            problems.append(f"{where}: names no registry defined in the catalogue files")
            continue
        before = len(problems)
        for key in _FIXED:
            if key in amend:
                problems.append(f"{where}: {key!r} cannot be amended (it says what the entry is)")
        evidence = amend.get("evidence", {})
        for key in CLASSIFIED:
            if key in amend and (not isinstance(evidence, Mapping) or key not in evidence):
                problems.append(f"{where}: sets {key!r} without its source (evidence.{key})")
        for key in _MERGED + _APPENDED:
            if key in amend and not isinstance(amend[key], Mapping if key in _MERGED else list):
                kind = "a table" if key in _MERGED else "an array of tables"
                problems.append(f"{where}: {key!r} must be {kind}")
        if len(problems) > before:
            continue
        base_label, base = merged[index[ident]]
        out = dict(base)
        for key, value in amend.items():
            old = base.get(key)
            if key in _MERGED:
                out[key] = {**(old if isinstance(old, Mapping) else {}), **value}
            elif key in _APPENDED:
                out[key] = [*(old if isinstance(old, list) else []), *value]
            elif key != "id":
                out[key] = value
        merged[index[ident]] = (f"{base_label} + {label}", out)
    return merged
