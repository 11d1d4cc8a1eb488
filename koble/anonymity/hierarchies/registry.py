"""Build a hierarchy from its name in an anonymisation config.

A config names one hierarchy per quasi-identifier, as a string or (in TOML) a table::

    [quasi_identifiers]
    alder = "age:bands=5,10,20;top=90"
    bosted = "kommune:vintage=2024;region=landsdel"
    innleggelse = "date:period=5;start=2000"
    diagnose = "icd10"
    legemiddel = "atc"
    kjonn = "sex"
    utdanning = "csv:hierarchies/utdanning.csv"
    fodt = { type = "age", reference_date = 2024-01-01, top = 90 }

=================  ==========================================  ===========================
name               options (``key=value`` joined by ``;``)     defaults
=================  ==========================================  ===========================
``age``            ``bands`` (comma list), ``top`` (or         ``bands=5,10,20;top=90``
                   ``none``), ``reference_date`` (birth dates)
``kommune``        ``vintage`` (2020, 2024 or ``coded``),      fylke as coded,
                   ``region`` (``helseregion``/``landsdel``)   ``region=helseregion``
``date``           ``period`` (years), ``start`` (year)        ``period=5;start=2000``
``icd10``          none
``atc``            none
``sex``            none
``categorical``    ``name`` (of level 0)                       ``name=value``
``count``          ``bands`` (lower bounds, from 1)            ``bands=1,2,5,10``
``csv``            the path (everything after ``csv:``), or    relative to ``base_dir``
                   ``path`` and ``encoding`` in a table
=================  ==========================================  ===========================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

from koble.anonymity.generalisation import Hierarchy
from koble.anonymity.hierarchies.age import AgeHierarchy
from koble.anonymity.hierarchies.atc import AtcHierarchy
from koble.anonymity.hierarchies.counts import DEFAULT_BANDS, CountHierarchy
from koble.anonymity.hierarchies.csv import CsvHierarchy
from koble.anonymity.hierarchies.dates import DateHierarchy
from koble.anonymity.hierarchies.geography import KommuneHierarchy
from koble.anonymity.hierarchies.icd10 import Icd10Hierarchy
from koble.anonymity.hierarchies.simple import CategoricalHierarchy, SexHierarchy
from koble.errors import UsageError

__all__ = [
    "HIERARCHY_NAMES",
    "ORDERED_HIERARCHIES",
    "hierarchy_file",
    "hierarchy_for",
    "is_ordered",
]

Options = dict[str, object]


def _age(options: Options, _: Path | None) -> Hierarchy:
    bands = _int_list(options.pop("bands", (5, 10, 20)), "bands")
    top = _optional_int(options.pop("top", 90), "top")
    reference = options.pop("reference_date", None)
    if reference is None:
        return AgeHierarchy(bands=bands, top=top)
    return AgeHierarchy.from_birth_dates(_date(reference, "reference_date"), bands, top)


def _kommune(options: Options, _: Path | None) -> Hierarchy:
    vintage = options.pop("vintage", None)
    if isinstance(vintage, str) and vintage.lower() in ("coded", "none", ""):
        vintage = None
    region = str(options.pop("region", "helseregion"))
    if region not in ("helseregion", "landsdel"):
        raise UsageError(f"region must be 'helseregion' or 'landsdel', not {region!r}")
    year = None if vintage is None else _int(vintage, "vintage")
    return KommuneHierarchy(
        vintage=year, region="landsdel" if region == "landsdel" else "helseregion"
    )


def _date(value: object, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise UsageError(f"{name} must be a date (YYYY-MM-DD), not {value!r}") from None


def _dates(options: Options, _: Path | None) -> Hierarchy:
    period = _int(options.pop("period", 5), "period")
    start = _int(options.pop("start", 2000), "start")
    return DateHierarchy(period_years=period, period_start=start)


def _count(options: Options, _: Path | None) -> Hierarchy:
    return CountHierarchy(bands=_int_list(options.pop("bands", DEFAULT_BANDS), "bands"))


def _csv(options: Options, base_dir: Path | None) -> Hierarchy:
    if "path" not in options:
        raise UsageError("a csv hierarchy needs a path (csv:path/to/file.csv)")
    path = Path(str(options.pop("path")))
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return CsvHierarchy(path, encoding=str(options.pop("encoding", "utf-8")))


def _categorical(options: Options, _: Path | None) -> Hierarchy:
    return CategoricalHierarchy(level_name=str(options.pop("name", "value")))


_BUILDERS: dict[str, Callable[[Options, Path | None], Hierarchy]] = {
    "age": _age,
    "kommune": _kommune,
    "date": _dates,
    "icd10": lambda options, _: Icd10Hierarchy(),
    "atc": lambda options, _: AtcHierarchy(),
    "sex": lambda options, _: SexHierarchy(),
    "categorical": _categorical,
    "count": _count,
    "csv": _csv,
}

HIERARCHY_NAMES = tuple(_BUILDERS)
#: Hierarchies of ordered values (ages, dates, counts): reports show them in that order.
ORDERED_HIERARCHIES = frozenset({"age", "date", "count"})


def is_ordered(spec: str | Mapping[str, object]) -> bool:
    """Whether ``spec`` names a hierarchy of ordered values (:data:`ORDERED_HIERARCHIES`),
    whose labels are numbered in that order; a spec that cannot be parsed is not."""
    try:
        name, _ = _parse(spec)
    except UsageError:
        return False
    return name in ORDERED_HIERARCHIES


def hierarchy_for(spec: str | Mapping[str, object], *, base_dir: Path | None = None) -> Hierarchy:
    """The hierarchy a config names: ``"age:bands=5,10;top=90"`` or ``{"type": "age", ...}``.

    ``base_dir`` resolves relative CSV paths (pass the config file's directory). Unknown
    names and options are a :class:`~koble.errors.UsageError` listing what is allowed.
    """
    name, options = _parse(spec)
    builder = _BUILDERS.get(name)
    if builder is None:
        raise UsageError(f"unknown hierarchy {name!r}; use one of {', '.join(HIERARCHY_NAMES)}")
    hierarchy = builder(options, base_dir)
    if options:
        raise UsageError(f"unknown option(s) for {name!r}: {', '.join(sorted(options))}")
    return hierarchy


def hierarchy_file(
    spec: str | Mapping[str, object], *, base_dir: Path | None = None
) -> Path | None:
    """The file a hierarchy spec reads (a ``csv`` hierarchy's path, resolved against
    ``base_dir`` as :func:`hierarchy_for` does), or None: so that a command can refuse to
    write over it. A spec that cannot be parsed reads no file."""
    try:
        name, options = _parse(spec)
    except UsageError:
        return None
    if name != "csv" or "path" not in options:
        return None
    path = Path(str(options["path"]))
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def _parse(spec: str | Mapping[str, object]) -> tuple[str, Options]:
    if isinstance(spec, Mapping):
        table = dict(spec)
        kind = table.pop("type", None)
        if not isinstance(kind, str):
            raise UsageError("a hierarchy table needs a 'type' (age, kommune, date, ...)")
        return kind.strip().lower(), table
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"a hierarchy is named by a string or a table, not {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name == "csv":
        return name, {"path": rest.strip()} if rest.strip() else {}
    options: Options = {}
    for item in filter(None, (part.strip() for part in rest.split(";"))):
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"option {item!r} of {name!r} must be key=value")
        options[key.strip().lower()] = value.strip()
    return name, options


def _int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{name} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {value!r}") from None


def _optional_int(value: object, name: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    return _int(value, name)


def _int_list(value: object, name: str) -> tuple[int, ...]:
    if isinstance(value, str):
        parts: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = [value]
    return tuple(_int(part, name) for part in parts)
