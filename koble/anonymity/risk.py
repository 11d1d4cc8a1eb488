"""Re-identification risk under the prosecutor and journalist attacker models.

* **Prosecutor**: the attacker knows the target is in the released file. A record in an
  equivalence class of size f (records sharing its quasi-identifiers) is re-identified with
  probability 1/f.
* **Journalist**: the attacker knows only that the target is in a larger population (here a
  population table such as the population register). A record whose class has F ≥ f members
  in the population is re-identified with probability 1/F.

For both: the highest risk (over records), the average risk (mean over records), how many
records have a risk above a threshold, and the uniques (sample uniques: f = 1; population
uniques: F = 1). All computed with one group-by (and one join for the journalist model), so
a file of millions of rows takes a second or so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from koble.anonymity.parameters import column_list, grouping_keys, raise_problems, share
from koble.errors import ColumnError

__all__ = ["RiskReport", "assess_risk", "prosecutor_risk"]

_F = "_sample_size"
_POP = "_population_size"


@dataclass(frozen=True)
class ModelRisk:
    """Risk figures of one attacker model."""

    highest: float
    average: float
    records_at_risk: int
    uniques: int


@dataclass(frozen=True)
class RiskReport:
    """Prosecutor risk always; journalist risk when a population was given."""

    records: int
    classes: int
    threshold: float
    prosecutor: ModelRisk
    journalist: ModelRisk | None
    unmatched_in_population: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model(sizes: pl.Series, weights: pl.Series, threshold: float) -> ModelRisk:
    """Risk when records in classes of weight ``weights`` face re-identification 1/``sizes``."""
    total = int(weights.sum())
    if total == 0:
        return ModelRisk(0.0, 0.0, 0, 0)
    risk = 1.0 / sizes.cast(pl.Float64)
    return ModelRisk(
        highest=float(risk.max()),  # type: ignore[arg-type]
        average=float((risk * weights).sum() / total),
        records_at_risk=int(weights.filter(risk > threshold).sum()),
        uniques=int(weights.filter(sizes == 1).sum()),
    )


def prosecutor_risk(sizes: pl.Series, threshold: float = 0.2) -> RiskReport:
    """The prosecutor figures from the class sizes alone (no population), as
    :func:`assess_risk` gives them: for a caller that has grouped the rows already."""
    raise_problems([share(threshold, "threshold", open_low=True)])
    return RiskReport(
        records=int(sizes.sum()),
        classes=len(sizes),
        threshold=threshold,
        prosecutor=_model(sizes, sizes, threshold),
        journalist=None,
    )


def _check(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ColumnError(f"{what} has no column {missing[0]!r}", column=missing[0])


def assess_risk(
    frame: pl.DataFrame,
    quasi_identifiers: Sequence[str],
    *,
    threshold: float = 0.2,
    population: pl.DataFrame | None = None,
) -> RiskReport:
    """Risk of ``frame`` over ``quasi_identifiers`` (values compared as text).

    ``population`` must hold the same quasi-identifier columns, generalised the same way.
    Sample classes missing from the population (which cannot happen when the sample is drawn
    from it) are counted in ``unmatched_in_population`` and given F = f.
    """
    qis = list(quasi_identifiers)
    raise_problems([*column_list(qis, "quasi_identifiers"),
                    share(threshold, "threshold", open_low=True)])  # fmt: skip
    _check(frame, qis, "the file")
    as_text = grouping_keys(qis)  # renamed: a QI named like _F or _POP must not collide
    keys = [key.meta.output_name() for key in as_text]
    classes = frame.select(as_text).group_by(keys).agg(pl.len().alias(_F))
    prosecutor = _model(classes[_F], classes[_F], threshold)
    journalist = None
    unmatched = 0
    if population is not None:
        _check(population, qis, "the population")
        sizes = population.select(as_text).group_by(keys).agg(pl.len().alias(_POP))
        joined = classes.join(sizes, on=keys, how="left", nulls_equal=True)
        unmatched = int(joined.filter(pl.col(_POP).is_null())[_F].sum())
        big = joined.select(pl.max_horizontal(pl.col(_POP).fill_null(0), pl.col(_F)))
        journalist = _model(big.to_series(), joined[_F], threshold)
    return RiskReport(
        records=frame.height,
        classes=classes.height,
        threshold=threshold,
        prosecutor=prosecutor,
        journalist=journalist,
        unmatched_in_population=unmatched,
    )
