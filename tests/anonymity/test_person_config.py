"""The person-level model in anon.toml (``requirements.model``/``m``) and in ``anonymise``:
parsing, the ``auto`` cascade, person-constant columns as quasi-identifiers, the figures."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.longitudinal import PersonKM, PersonSet
from koble.anonymity.release import anonymise_file
from koble.errors import UsageError


def _write(tmp_path: Path, requirements: str) -> Path:
    path = tmp_path / "anon.toml"
    path.write_text(f'[requirements]\n{requirements}\n[quasi_identifiers]\nage = "age"\n', "utf-8")
    return path


def test_model_and_m_are_read_and_checked(tmp_path: Path) -> None:
    text = 'k = 5\nperson = "p"\nmodel = "person-km"\nm = 3'
    config = AnonymiseConfig.read(_write(tmp_path, text))
    assert (config.model, config.m) == ("person-km", 3)
    assert config.person_models() == [PersonKM(5, 3)]
    assert config.to_dict()["model"] == "person-km" and config.to_dict()["m"] == 3
    auto = AnonymiseConfig.read(_write(tmp_path, 'k = 4\nperson = "p"\nm = 3'))
    assert auto.person_models() == [PersonSet(4), PersonKM(4, 3), PersonKM(4, 2)]
    assert AnonymiseConfig.read(_write(tmp_path, "k = 4")).person_models() == [None]
    with pytest.raises(UsageError) as caught:
        AnonymiseConfig.read(_write(tmp_path, 'k = 5\nmodel = "persons"\nm = 0'))
    assert "requirements.model must be one of auto, row, person-set, person-km" in str(caught.value)
    assert "requirements.m" in str(caught.value)
    with pytest.raises(UsageError, match=r"requirements\.model needs requirements\.person"):
        AnonymiseConfig.read(_write(tmp_path, 'k = 5\nmodel = "person-set"'))
    (tmp_path / "pop.csv").write_text("age\n40\n", "utf-8")
    text = 'k = 5\nperson = "p"\n[risk]\npopulation = "pop.csv"'
    with pytest.raises(UsageError, match='it needs model = "row"'):
        AnonymiseConfig.read(_write(tmp_path, text))


def _cascade_frame() -> pl.DataFrame:
    """Service groups g1-g3 (a hierarchy without a single top): five persons each hold
    {g1, g2}, {g1, g3}, {g2, g3}, and one holds all three. Every pair is held by six
    persons, but the one set of three is unique."""
    sets = [["a1", "a2"]] * 5 + [["a1", "a3"]] * 5 + [["a2", "a3"]] * 5 + [["a1", "a2", "a3"]]
    rows = [(p, s) for p, items in enumerate(sets) for s in items]
    return pl.DataFrame({"pid": [p for p, _ in rows], "service": [s for _, s in rows]},
                        schema={"pid": pl.Int64, "service": pl.String})  # fmt: skip


def test_auto_takes_the_strictest_model_that_finds_a_release(tmp_path: Path) -> None:
    (tmp_path / "service.csv").write_text("a1;g1\na2;g2\na3;g3\n", "utf-8")
    source = tmp_path / "in.parquet"
    _cascade_frame().write_parquet(source)
    config = AnonymiseConfig(
        k=5, quasi_identifiers={"service": "csv:service.csv"}, person="pid", m=3,
        base_dir=tmp_path,
    )  # fmt: skip
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    assert release.tried == [
        "person-set 5-anonymity", "person-km 5^3-anonymity", "person-km 5^2-anonymity"
    ]  # fmt: skip
    assert release.model == "person-km 5^2-anonymity" and release.result.feasible
    certificate = release.certificate()
    assert certificate["model"]["used"] == "person-km 5^2-anonymity"
    assert certificate["model"]["tried"] == release.tried
    strict = AnonymiseConfig(
        k=5, quasi_identifiers={"service": "csv:service.csv"}, person="pid",
        model="person-set", base_dir=tmp_path,
    )  # fmt: skip
    refused = anonymise_file(source, strict, tmp_path / "o2.parquet", tmp_path / "h2.parquet")
    assert not refused.result.feasible and refused.tried == ["person-set 5-anonymity"]
    assert not (tmp_path / "o2.parquet").exists()


def test_person_constant_columns_become_quasi_identifiers(tmp_path: Path) -> None:
    # 12 persons with two rows each in the same age band; the education level is constant
    # within each person and unique to one person: released as is, it would single her out.
    frame = pl.DataFrame({
        "pid": [p for p in range(12) for _ in range(2)],
        "age": [70, 72] * 12,
        "education": ["rare" if p == 0 else "common" for p in range(12) for _ in range(2)],
        "score": list(range(24)),  # varies within persons: not a quasi-identifier
    })  # fmt: skip
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=5, quasi_identifiers={"age": "age"}, person="pid")
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    assert release.person_constant == ["education"]
    assert release.certificate()["model"]["person_constant_quasi_identifiers"] == ["education"]
    released = pl.read_parquet(tmp_path / "out.parquet")
    assert "pid" not in released.columns
    rare = released.filter(pl.col("education") == "rare").height
    held = pl.read_parquet(tmp_path / "held.parquet")
    assert rare == 0  # coarsened to * or withheld with her rows
    assert released.height + held.height == frame.height
    assert release.result.persons_suppressed is not None
    after = release.after
    assert after is not None and after.meets


def test_the_person_shape_is_read_checked_and_reported(tmp_path: Path) -> None:
    text = 'k = 2\nperson = "pid"\n[shape]\nunit = "person"\nkind = "service"\ndate = "day"'
    config = AnonymiseConfig.read(_write(tmp_path, text))
    assert (config.shape, config.kind, config.date) == ("person", "service", "day")
    assert config.person_models() == [None]  # one row per person: rows are persons
    for bad, message in [
        ('k = 2\nperson = "pid"\n[shape]\nunit = "persons"\nkind = "s"', "shape.unit must be"),
        ('k = 2\n[shape]\nunit = "person"\nkind = "s"', "needs requirements.person and"),
        ('k = 2\n[shape]\nkind = "s"', 'need shape.unit = "person"'),
        ('k = 2\nperson = "p"\n[shape]\nunit = "person"\nkind = "s"\nwhat = 1', "shape.what"),
    ]:
        with pytest.raises(UsageError) as caught:
            AnonymiseConfig.read(_write(tmp_path, bad))
        assert message in str(caught.value)
    frame = pl.DataFrame({
        "pid": [p for p in range(20) for _ in range(2)],
        "age": [70 + p % 3 for p in range(20) for _ in range(2)],
        "service": ["home", "alarm"] * 20,
        "day": [f"2020-0{1 + p % 2}-01" for p in range(40)],
    })  # fmt: skip
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=5, quasi_identifiers={"age": "age"}, person="pid",
                             shape="person", kind="service", date="day")  # fmt: skip
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    released = pl.read_parquet(tmp_path / "out.parquet")
    held = pl.read_parquet(tmp_path / "held.parquet")
    assert "pid" not in released.columns and {"n_home", "first_alarm"} <= set(released.columns)
    assert released.height + held.height == 20  # one row per person, every person accounted
    assert (
        int(
            released.group_by(
                ["age", *[c for c in released.columns if c[:2] in ("n_", "fi", "la")]]
            )
            .len()["len"]
            .min()
        )
        >= 5
    )  # type: ignore[arg-type]
    certificate = release.certificate()
    assert certificate["shape"]["persons"] == 20 and certificate["shape"]["rows_in"] == 40
    assert certificate["model"]["used"] == "5-anonymity over one row per person"
