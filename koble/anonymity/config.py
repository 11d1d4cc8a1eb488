"""The anonymisation config (``ANON.toml``), validated all at once.

::

    [requirements]
    k = 5                    # every released class has at least k records
    person = "lopenr"        # optional: k counts distinct persons (values of this column)
                             # per class, for files with several rows per person; the
                             # column is not released
    suppression = 0.02       # at most this share of records may be withheld
    metric = "precision"     # height | precision | discernibility | non-uniform entropy |
                             # average class size
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
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koble.anonymity.metrics import Metric
from koble.errors import FileFormatError, UsageError

__all__ = ["AnonymiseConfig"]

_SECTIONS = {"requirements", "quasi_identifiers", "sensitive", "risk"}


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
    base_dir: Path = field(default=Path("."), compare=False)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: Path, source: str
    ) -> AnonymiseConfig:
        """Build from parsed TOML; every problem is reported at once, naming its key."""
        problems: list[str] = []
        for unknown in sorted(set(data) - _SECTIONS):
            problems.append(f"unknown section [{unknown}]")
        req = dict(data.get("requirements", {}))
        qis = dict(data.get("quasi_identifiers", {}))
        sensitive = dict(data.get("sensitive", {}))
        risk = dict(data.get("risk", {}))
        k = req.pop("k", None)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            problems.append("requirements.k must be a whole number of at least 1")
        suppression = req.pop("suppression", 0.0)
        if not isinstance(suppression, int | float) or not 0 <= suppression <= 1:
            problems.append("requirements.suppression must be a share between 0 and 1")
        metric_name = req.pop("metric", Metric.PRECISION.value)
        try:
            metric = Metric(metric_name)
        except ValueError:
            names = ", ".join(m.value for m in Metric)
            problems.append(f"requirements.metric {metric_name!r} is not one of: {names}")
            metric = Metric.PRECISION
        l_value, l_kind = req.pop("l", None), req.pop("l_kind", "distinct")
        t_value, t_ordered = req.pop("t", None), req.pop("t_ordered", False)
        person = req.pop("person", None)
        if person is not None and (not isinstance(person, str) or not person):
            problems.append("requirements.person must name a column")
        if l_value is not None and (not isinstance(l_value, int | float) or l_value < 1):
            problems.append("requirements.l must be at least 1")
        if l_kind not in ("distinct", "entropy"):
            problems.append("requirements.l_kind must be 'distinct' or 'entropy'")
        if t_value is not None and (not isinstance(t_value, int | float) or not 0 <= t_value <= 1):
            problems.append("requirements.t must be between 0 and 1")
        problems += [f"unknown key requirements.{key}" for key in sorted(req)]
        if not qis:
            problems.append("[quasi_identifiers] must name at least one column")
        for column, spec in qis.items():
            if not isinstance(spec, str | dict):
                problems.append(f"quasi_identifiers.{column} must be a hierarchy name or table")
        column = sensitive.pop("column", None)
        problems += [f"unknown key sensitive.{key}" for key in sorted(sensitive)]
        if (l_value is not None or t_value is not None) and column is None:
            problems.append("l-diversity and t-closeness need [sensitive] column")
        if person is not None and column is not None:
            problems.append(
                "requirements.person cannot be combined with a [sensitive] column yet "
                "(both use the search's one sensitive slot)"
            )
        if person is not None and person in qis:
            problems.append("requirements.person cannot also be a quasi-identifier")
        threshold = risk.pop("threshold", 0.2)
        if not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            problems.append("risk.threshold must be in (0, 1]")
        population = risk.pop("population", None)
        problems += [f"unknown key risk.{key}" for key in sorted(risk)]
        if problems:
            raise UsageError(f"{source}: " + "; ".join(problems))
        return cls(
            k=int(k),  # type: ignore[arg-type]
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
            base_dir=base_dir,
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

    def to_dict(self) -> dict[str, Any]:
        """The config as the certificate records it (paths as given, no base directory)."""
        return {
            "k": self.k, "suppression": self.suppression, "metric": self.metric.value,
            "quasi_identifiers": self.quasi_identifiers, "sensitive": self.sensitive,
            "l": self.l, "l_kind": self.l_kind, "t": self.t, "t_ordered": self.t_ordered,
            "risk_threshold": self.risk_threshold,
            "population": None if self.population is None else self.population.name,
            "person": self.person,
        }  # fmt: skip
