"""The anonymisation config (``ANON.toml``), validated all at once.

::

    [requirements]
    k = 5                    # every released class has at least k records
    person = "lopenr"        # optional: the column naming the person, for files with
                             # several rows per person; it is never released
    model = "auto"           # with person: row | person-set | person-km | auto (below)
    m = 2                    # person-km: any m of a person's rows are shared by k persons
    suppression = 0.02       # at most this share of records may be withheld
    metric = "precision"     # height | precision | discernibility | non-uniform entropy |
                             # average class size | loss (ARX's definitions, see metrics)
    l = 2                    # optional: l-diversity of the sensitive attribute
    l_kind = "distinct"      # distinct | entropy
    t = 0.3                  # optional: t-closeness of the sensitive attribute
    t_ordered = false        # ordered distance (ordinal sensitive values) or equal distance

    [quasi_identifiers]      # column = hierarchy (see koble.anonymity.hierarchies)
    age = "age"
    kommune = "kommune:vintage=2024"
    start_date = "date"

    [sensitive]
    column = "diagnosis"     # optional

    [risk]
    threshold = 0.2          # records with re-identification risk above this are "at risk"
    population = "population.parquet"   # optional: journalist model against this table

    [shape]                  # optional, with person: deliver one row per person
    unit = "person"          # rows (default) | person
    kind = "service_type"    # rows per value of this column become n_<value> columns
    date = "start_date"      # optional: first_<value> and last_<value> dates

With ``person``, ``model`` says what must be shared by at least k persons
(:mod:`koble.anonymity.longitudinal`): ``row`` each row class; ``person-set`` each person's
whole set of generalised rows; ``person-km`` any ``m`` of a person's rows. ``auto`` (the
default) takes the strictest that finds a release: person-set, then person-km from ``m`` down
to 2; it never falls back to ``row``. Under the person models, columns constant within every
person are quasi-identifiers too (:mod:`koble.anonymity.person_columns`).

``[shape] unit = "person"`` releases one row per person instead
(:mod:`koble.anonymity.person_shape`): k-anonymity over its rows is k-anonymity over
persons, the counts and the dates per kind are two tied quasi-identifiers, and the columns
constant within every person are quasi-identifiers as well.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koble.anonymity.hierarchies.registry import hierarchy_file, hierarchy_for
from koble.anonymity.longitudinal import MODELS, PersonKM, PersonModel, PersonSet, m_problem
from koble.anonymity.metrics import Metric
from koble.anonymity.parameters import (
    at_least,
    column_list,
    raise_problems,
    share,
    whole_number,
)
from koble.errors import FileFormatError, InputError, UsageError, redact

__all__ = ["AnonymiseConfig"]

_SECTIONS = {"requirements", "quasi_identifiers", "sensitive", "risk", "shape"}


_SECTION_ORDER = ("requirements", "quasi_identifiers", "sensitive", "risk", "shape")
SHAPES = ("rows", "person")


def _section(data: Mapping[str, Any], name: str, problems: list[str | None]) -> dict[str, Any]:
    """The table ``[name]`` (empty when absent); a problem when it is not a table."""
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        problems.append(f"[{name}] must be a table")
        return {}
    return dict(value)


def _column(value: object, name: str) -> str | None:
    """A problem unless ``value`` (when given) is a non-empty column name."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        return f"{name} must name a column"
    return None


def _value_problems(
    *, k: object, suppression: object, l_value: object, l_kind: object, t_value: object,
    t_ordered: object, threshold: object, qis: Mapping[str, object], sensitive: object,
    person: object, model: object = "auto", m: object = 2, shape: object = "rows",
    kind: object = None, date: object = None,
) -> list[str | None]:  # fmt: skip
    """Every rule on the values of a config (types, ranges, combinations), by TOML key."""
    distinct_fraction = (
        l_kind == "distinct"
        and isinstance(l_value, float)
        and math.isfinite(l_value)
        and not l_value.is_integer()
    )
    needs_sensitive = l_value is not None or t_value is not None
    return [
        whole_number(k, "requirements.k"),
        share(suppression, "requirements.suppression"),
        None if l_value is None else at_least(l_value, "requirements.l"),
        "requirements.l must be a whole number for distinct l-diversity"
        if distinct_fraction else None,
        None if l_kind in ("distinct", "entropy")
        else "requirements.l_kind must be 'distinct' or 'entropy'",
        None if t_value is None else share(t_value, "requirements.t"),
        None if isinstance(t_ordered, bool) else "requirements.t_ordered must be true or false",
        _column(person, "requirements.person"),
        None if model in ("auto", *MODELS)
        else f"requirements.model must be one of auto, {', '.join(MODELS)}",
        m_problem(m, "requirements.m"),
        "requirements.model needs requirements.person (the column naming the person)"
        if person is None and model in ("person-set", "person-km") else None,
        None if shape in SHAPES else f"shape.unit must be one of {', '.join(SHAPES)}",
        _column(kind, "shape.kind"),
        _column(date, "shape.date"),
        'shape.unit = "person" needs requirements.person and shape.kind'
        if shape == "person" and (person is None or kind is None) else None,
        'shape.kind and shape.date need shape.unit = "person"'
        if shape != "person" and (kind is not None or date is not None) else None,
        'shape.unit = "person" cannot be combined with a [sensitive] column yet'
        if shape == "person" and sensitive is not None else None,
        *column_list(list(qis), "[quasi_identifiers]"),
        *(f"quasi_identifiers.{c} must be a hierarchy name or table"
          for c, spec in qis.items() if not isinstance(spec, str | Mapping)),
        _column(sensitive, "sensitive.column"),
        "l-diversity and t-closeness need [sensitive] column"
        if needs_sensitive and sensitive is None else None,
        "requirements.person cannot be combined with a [sensitive] column yet (both use the "
        "search's one sensitive slot)" if person is not None and sensitive is not None else None,
        "requirements.person cannot also be a quasi-identifier"
        if person is not None and person in qis else None,
        "sensitive.column cannot also be a quasi-identifier"
        if sensitive is not None and sensitive in qis else None,
        share(threshold, "risk.threshold", open_low=True),
    ]  # fmt: skip


def _population_problem(
    population: object, person: object, model: object, shape: object = "rows"
) -> str | None:
    """The journalist model compares row classes with a population: not persons' sets."""
    if population is not None and shape == "person":
        return "risk.population (the journalist model) cannot be combined with [shape] yet"
    if population is not None and person is not None and model != "row":
        return (
            "risk.population (the journalist model) judges rows; with requirements.person "
            'it needs model = "row"'
        )
    return None


def _hierarchy_problems(qis: Mapping[str, object], base_dir: Path) -> list[str | None]:
    """Build every named hierarchy (CSV files are read and checked) and collect failures."""
    problems: list[str | None] = []
    for column, spec in qis.items():
        if isinstance(spec, str | Mapping):
            try:
                hierarchy_for(spec, base_dir=base_dir)  # type: ignore[arg-type]
            except InputError as exc:
                problems.append(f"quasi_identifiers.{column}: {exc}")
    return problems


@dataclass(frozen=True)
class AnonymiseConfig:
    k: int
    quasi_identifiers: dict[str, str | dict[str, Any]]
    suppression: float = 0.0
    metric: Metric = Metric.PRECISION
    sensitive: str | None = None
    l: float | None = None  # noqa: E741 - the literature's name
    l_kind: str = "distinct"
    t: float | None = None
    t_ordered: bool = False
    risk_threshold: float = 0.2
    population: Path | None = None
    #: The column identifying the person when a file has several rows per person: then k
    #: counts distinct persons per class, not rows, and the column is dropped from the release.
    person: str | None = None
    #: With ``person``: which person-level model must hold (see the module docstring).
    model: str = "auto"
    #: person-km's m.
    m: int = 2
    #: ``person``: release one row per person (``kind`` counts, ``date`` first/last).
    shape: str = "rows"
    kind: str | None = None
    date: str | None = None
    base_dir: Path = field(default=Path("."), compare=False)
    #: Where the config came from (its file), for messages about data that does not fit it.
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """A config built directly is held to the same rules as one read from a file."""
        raise_problems(_value_problems(
            k=self.k, suppression=self.suppression, l_value=self.l, l_kind=self.l_kind,
            t_value=self.t, t_ordered=self.t_ordered, threshold=self.risk_threshold,
            qis=self.quasi_identifiers, sensitive=self.sensitive, person=self.person,
            model=self.model, m=self.m, shape=self.shape, kind=self.kind, date=self.date,
        ))  # fmt: skip
        raise_problems([_population_problem(self.population, self.person, self.model, self.shape)])
        if not isinstance(self.metric, Metric):
            raise UsageError("requirements.metric must be a Metric")

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: Path, source: str
    ) -> AnonymiseConfig:
        """Build from parsed TOML; every problem is reported at once, naming its key."""
        problems: list[str | None] = []
        for unknown in sorted(set(data) - _SECTIONS):
            problems.append(f"unknown section [{unknown}]")
        req, qis, sensitive, risk, shape = (
            _section(data, name, problems) for name in _SECTION_ORDER
        )
        k = req.pop("k", None)
        suppression = req.pop("suppression", 0.0)
        metric_name = req.pop("metric", Metric.PRECISION.value)
        try:
            metric = Metric(metric_name)
        except (ValueError, TypeError):
            names = ", ".join(m.value for m in Metric)
            shown = redact(repr(metric_name))
            problems.append(f"requirements.metric {shown} is not one of: {names}")
            metric = Metric.PRECISION
        l_value, l_kind = req.pop("l", None), req.pop("l_kind", "distinct")
        t_value, t_ordered = req.pop("t", None), req.pop("t_ordered", False)
        person = req.pop("person", None)
        model, m = req.pop("model", "auto"), req.pop("m", 2)
        problems += [f"unknown key requirements.{key}" for key in sorted(req)]
        column = sensitive.pop("column", None)
        problems += [f"unknown key sensitive.{key}" for key in sorted(sensitive)]
        threshold = risk.pop("threshold", 0.2)
        population = risk.pop("population", None)
        problems += [f"unknown key risk.{key}" for key in sorted(risk)]
        unit, kind, date = (
            shape.pop("unit", "rows"),
            shape.pop("kind", None),
            shape.pop("date", None),
        )
        problems += [f"unknown key shape.{key}" for key in sorted(shape)]
        problems += _value_problems(
            k=k, suppression=suppression, l_value=l_value, l_kind=l_kind, t_value=t_value,
            t_ordered=t_ordered, threshold=threshold, qis=qis, sensitive=column, person=person,
            model=model, m=m, shape=unit, kind=kind, date=date,
        )  # fmt: skip
        problems += _hierarchy_problems(qis, base_dir)
        problems.append(_population_problem(population, person, model, unit))
        if population is not None and (not isinstance(population, str) or not population):
            problems.append("risk.population must name a file")
        elif population is not None and not (base_dir / population).is_file():
            problems.append(f"risk.population: no such file {base_dir / population}")
        raise_problems(problems, source=source)
        return cls(
            k=int(k),  # type: ignore[call-overload]
            quasi_identifiers=qis,
            suppression=float(suppression),
            metric=metric,
            sensitive=column,
            l=None if l_value is None else float(l_value),
            l_kind=str(l_kind),
            t=None if t_value is None else float(t_value),
            t_ordered=bool(t_ordered),
            risk_threshold=float(threshold),
            population=None if population is None else base_dir / str(population),
            person=None if person is None else str(person),
            model=str(model),
            m=int(m),  # type: ignore[call-overload]
            shape=str(unit),
            kind=None if kind is None else str(kind),
            date=None if date is None else str(date),
            base_dir=base_dir,
            source=source,
        )

    @classmethod
    def read(cls, path: str | Path) -> AnonymiseConfig:
        path = Path(path)
        if not path.is_file():
            raise FileFormatError("no such config file", path=path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"not valid TOML: {exc}", path=path) from None
        return cls.from_mapping(data, base_dir=path.parent, source=str(path))

    def input_files(self) -> dict[str, Path]:
        """Every file this config reads besides the data, keyed by where the config names it
        (``quasi_identifiers.occupation``, ``risk.population``): CSV hierarchies and the
        population table. A command must never write an output over one of them."""
        files = {
            f"quasi_identifiers.{column}": path
            for column, spec in self.quasi_identifiers.items()
            if (path := hierarchy_file(spec, base_dir=self.base_dir)) is not None
        }
        if self.population is not None:
            files["risk.population"] = self.population
        return files

    def to_dict(self) -> dict[str, Any]:
        """The config as the certificate records it (paths as given, no base directory)."""
        return {
            "k": self.k, "suppression": self.suppression, "metric": self.metric.value,
            "quasi_identifiers": self.quasi_identifiers, "sensitive": self.sensitive,
            "l": self.l, "l_kind": self.l_kind, "t": self.t, "t_ordered": self.t_ordered,
            "risk_threshold": self.risk_threshold,
            "population": None if self.population is None else self.population.name,
            "person": self.person, "model": self.model, "m": self.m,
            "shape": {"unit": self.shape, "kind": self.kind, "date": self.date},
        }  # fmt: skip

    def person_models(self) -> list[PersonModel | None]:
        """The models to try, strictest first; ``[None]`` is the row model (k persons per
        row class with a person column, k rows without)."""
        if self.person is None or self.model == "row" or self.shape == "person":
            return [None]
        if self.model == "person-set":
            return [PersonSet(self.k)]
        if self.model == "person-km":
            return [PersonKM(self.k, self.m)]
        return [PersonSet(self.k), *(PersonKM(self.k, m) for m in range(self.m, 1, -1))]
