"""The person release gathered once in its final order (:func:`apply_rows`) equals the one
made before issue 14's overhead work: ``SearchResult.apply`` and a sort of the released
values as text. Same released rows in the same order with the same types, same withheld
rows and reasons, same class ids; and the check after, given the search's codes
(:func:`person_ids`), has the figures of the check that reads the values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.check import check_frame
from koble.anonymity.checks import KPersons
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.distributions import exact_codes
from koble.anonymity.frequency import Lookups, class_keys
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.longitudinal import PersonKM, PersonSet
from koble.anonymity.preparation import IDS, level0_ids
from koble.anonymity.release import anonymise_file
from koble.anonymity.row_release import apply_rows, person_ids
from koble.anonymity.search import SearchResult, find_optimal
from tests.anonymity.person_risk_reference import person_risk_reference

_DAY = dt.date(2020, 1, 1)
SPECS = {"kom": "categorical", "svc": "categorical", "age": "age", "day": "date"}


def _old_apply_rows(
    frame: pl.DataFrame, qis: list[Generalisation], result: SearchResult, lookups: Lookups,
    sensitive: Generalisation, person: str,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series, np.ndarray]:  # fmt: skip
    """The row release as it was: apply, then sort the released values as text."""
    keyed = frame.with_columns(
        pl.Series(IDS, class_keys(lookups, result.levels)),
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("\0row"),
    )
    released, held = result.apply(keyed, qis, sensitive)
    ids, kept = released.get_column(IDS), released.get_column("\0row").to_numpy()
    released, held = released.drop(IDS, "\0row"), held.drop(IDS, "\0row")
    order = released.select(pl.arg_sort_by(
        [c for c in released.columns if c != person], nulls_last=True, maintain_order=True,
    )).to_series()  # fmt: skip
    return released[order], held, ids.gather(order), kept


@st.composite
def longitudinal(draw: st.DrawFn) -> pl.DataFrame:
    """1-30 persons with 1-5 rows each: kommune and age constant per person (mostly), a
    service and a day per row, a free-text note (nulls, sometimes constant)."""
    rows: dict[str, list[object]] = {c: [] for c in ("pid", "kom", "svc", "age", "day", "note")}
    for person in range(draw(st.integers(1, 30))):
        kom, age = draw(st.sampled_from(["0301", "4601", "5001"])), draw(st.integers(67, 95))
        note = draw(st.sampled_from(["x", None, "y"]))
        for _ in range(draw(st.integers(1, 5))):
            rows["pid"].append(1000 - 3 * person)
            rows["kom"].append(kom if draw(st.integers(0, 6)) else "1103")
            rows["svc"].append(draw(st.sampled_from(["home", "alarm", "day_care", None])))
            rows["age"].append(age)
            rows["day"].append(_DAY + dt.timedelta(days=draw(st.integers(0, 800))))
            rows["note"].append(note if draw(st.booleans()) else draw(st.sampled_from(["z", None])))
    schema = {"pid": pl.Int64, "kom": pl.String, "svc": pl.String, "age": pl.Int64,
              "day": pl.Date, "note": pl.String}  # fmt: skip
    frame = pl.DataFrame(rows, schema=schema)
    frame = frame[list(draw(st.permutations(range(frame.height))))]
    cut = draw(st.integers(0, frame.height))  # in two chunks, as a file of row groups reads
    return pl.concat([frame.head(cut), frame.tail(frame.height - cut)], rechunk=False)


@settings(max_examples=120, deadline=None)
@given(longitudinal(), st.integers(2, 4), st.sampled_from([0.0, 0.1, 0.4]), st.booleans())
def test_person_release_equals_the_old_row_release(
    frame: pl.DataFrame, k: int, limit: float, km: bool
) -> None:
    qis = [hierarchy_for(spec).apply(frame[c]) for c, spec in SPECS.items()]
    sensitive = hierarchy_for("categorical").apply(frame["pid"])
    model = PersonKM(k, 2) if km else PersonSet(k)
    result = find_optimal(qis, k=k, suppression_limit=limit, criteria=[KPersons(k)],
                          sensitive=sensitive, person_model=model)  # fmt: skip
    if not result.feasible:
        return
    lookups = Lookups(qis)
    released, held, ids, rows = apply_rows(frame, qis, result, lookups, sensitive, "pid")
    old, old_held, old_ids, old_kept = _old_apply_rows(frame, qis, result, lookups, sensitive,
                                                       "pid")  # fmt: skip
    assert released.equals(old) and released.schema == old.schema
    assert held.equals(old_held) and held.schema == old_held.schema
    assert (released.n_chunks(), held.n_chunks()) == (old.n_chunks(), old_held.n_chunks())
    assert ids.to_list() == old_ids.to_list()
    assert sorted(rows.tolist()) == old_kept.tolist()
    names = list(SPECS)
    for model_name in ("person-set", "person-km"):
        codes = person_ids(frame, qis, result.levels, sensitive, "pid", rows, [True] * len(qis))
        fast = check_frame(released, names, k=k, person="pid", model=model_name, scan=False,
                           class_ids=ids, column_ids=codes)  # fmt: skip
        slow = check_frame(old, names, k=k, person="pid", model=model_name, scan=False)
        assert fast == slow
        assert fast.person_level == person_risk_reference(old, names, "pid", k=k)
    # and before the release: the level-0 codes as the values
    exact = [exact_codes(frame[g.name], g) for g in qis]
    before = check_frame(frame, names, k=k, person="pid", scan=False,
                         class_ids=level0_ids(qis, lookups, exact),
                         column_ids=person_ids(frame, qis, (0,) * len(qis), sensitive, "pid",
                                               None, exact))  # fmt: skip
    assert before == check_frame(frame, names, k=k, person="pid", scan=False)


@settings(max_examples=15, deadline=None)
@given(longitudinal())
def test_anonymise_file_writes_the_old_release(
    tmp_path_factory: object, frame: pl.DataFrame
) -> None:
    tmp = Path(tmp_path_factory.mktemp("rel"))  # type: ignore[attr-defined]
    source = tmp / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(SPECS), suppression=0.4, person="pid")
    release = anonymise_file(source, config, tmp / "out.parquet", tmp / "held.parquet")
    if not release.result.feasible:
        return
    written = pl.read_parquet(tmp / "out.parquet")
    assert release.after is not None and written.height == release.after.rows
    # the rows as the old path would release them, read back the same
    qis = [hierarchy_for(spec).apply(frame[c]) for c, spec in SPECS.items()]
    promoted = [c for c in release.person_constant]
    qis += [hierarchy_for("categorical").apply(frame[c]) for c in promoted if c == "note"]
    if len(qis) == len(release.result.levels):
        sensitive = hierarchy_for("categorical").apply(frame["pid"])
        old, _, _, _ = _old_apply_rows(frame, qis, release.result, Lookups(qis), sensitive, "pid")
        assert written.equals(old.drop("pid"))
