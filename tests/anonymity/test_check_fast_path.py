"""The anonymise command's checks group by one integer class key instead of by the QIs as
text (issue 14: the command's overhead at 5 M rows): the figures must not change."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.frequency import Lookups, class_keys
from koble.anonymity.release import anonymise_file, check_frame
from tests.anonymity.test_frequency import ADULT, datasets


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_class_ids_give_the_same_check(data: st.DataObject) -> None:
    qis, _, frame = data.draw(datasets(max_rows=80))
    frame = frame.with_columns(pl.Series("p", [f"p{i % 7}" for i in range(frame.height)]))
    names = [g.name for g in qis]
    k = data.draw(st.integers(1, 6))
    person = data.draw(st.sampled_from([None, "p"]))
    options = dict(k=k, sensitive="s", person=person, scan=False)
    ids = pl.Series(class_keys(Lookups(qis), (0,) * len(qis)))
    slow = check_frame(frame, names, **options)  # type: ignore[arg-type]
    fast = check_frame(frame, names, class_ids=ids, **options)  # type: ignore[arg-type]
    assert fast.to_dict() == slow.to_dict()


def test_anonymise_reports_what_a_fresh_check_of_its_output_finds(tmp_path: Path) -> None:
    qis = {q: f"csv:{ADULT / f'adult_hierarchy_{q}.csv'}" for q in ("age", "sex", "race",
                                                                    "education")}  # fmt: skip
    config = AnonymiseConfig.from_mapping(
        {"requirements": {"k": 5, "suppression": 0.02}, "quasi_identifiers": qis},
        base_dir=tmp_path, source="anon.toml",
    )  # fmt: skip
    source = tmp_path / "adult.csv"
    pl.read_csv(ADULT / "adult.csv", separator=";", infer_schema=False).write_csv(source)
    release = anonymise_file(source, config, tmp_path / "out.csv", tmp_path / "held.csv")
    assert release.after is not None and release.result.feasible
    out = pl.read_csv(tmp_path / "out.csv", separator=";", infer_schema=False)
    fresh = check_frame(out, list(qis), k=5, path=str(tmp_path / "out.csv"), model="row")
    assert release.after.to_dict() == fresh.to_dict()
    whole = pl.read_csv(source, infer_schema=False)
    direct = check_frame(whole, list(qis), k=5, path=str(source), model="row", scan=False)
    assert release.before.to_dict() == direct.to_dict()
