"""How the probabilistic stage trains: from the exact links when there are enough, else by EM;
seeded and reproducible; with the caller's extra comparison fields."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import polars as pl
import pytest

from koble.errors import ColumnError, UsageError
from koble.recovery import model
from koble.recovery.contract import (
    COMPARE_KINDS,
    COMPARE_REGISTER_FILE,
    RECORD_SCHEMA,
    REGISTER_FILES,
    TRAININGS,
)
from koble.recovery.probabilistic import ModelReport, probabilistic
from koble.recovery.register import Register
from koble.recovery.resolve import resolve
from koble.recovery.training import MIN_LABELS
from tests.recovery.synthetic_names import records_of, world

KINDS = ("clean", "typo", "swap", "no_middle", "ascii", "digit")


@functools.cache
def _world() -> tuple[Register, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A register of 1500 persons; 300 labelled records (number = person_id); 400 dirty
    records without a number (truth in ``person_id``); each person's street (extra field)."""
    persons, names, addresses = world(1500, seed=21)
    register = Register.from_frames(persons, names=names, addresses=addresses)
    training = records_of(persons, names, [(i, "clean") for i in range(300)], "T")
    training = training.with_columns(pl.col("person_id").alias("fnr")).drop("kind")
    picks = [(i, KINDS[i % len(KINDS)]) for i in range(600, 1000)]
    dirty = records_of(persons, names, picks, "R").drop("kind")
    streets = persons.select(
        "person_id", pl.format("Gate {}", pl.int_range(pl.len()) % 97).alias("street")
    )
    return register, training, dirty, streets


def _run(
    training: pl.DataFrame, records: pl.DataFrame, seed: int = 4, **options: object
) -> tuple[pl.DataFrame, ModelReport]:
    register = _world()[0]
    result, report = probabilistic(
        records, register, training=training, thresholds=(0.5, 0.99), seed=seed,
        **options,  # type: ignore[arg-type]
    )  # fmt: skip
    return result.linked, report


def _recall(linked: pl.DataFrame, truth: pl.DataFrame) -> tuple[int, int]:
    """(true links, false links)."""
    right = linked.join(truth, on=["record_id", "person_id"]).height
    return right, linked.height - right


def test_enough_labels_train_on_the_exact_links() -> None:
    _, training, dirty, _ = _world()
    assert training.height >= MIN_LABELS
    linked, report = _run(training, dirty.select(RECORD_SCHEMA.names()))
    assert report.training == "labels" and report.training in TRAININGS
    assert report.n_training_pairs == training.height
    right, wrong = _recall(linked, dirty.select("record_id", "person_id"))
    assert wrong == 0 and right >= 0.95 * dirty.height
    assert report.to_dict()["training"] == "labels"


def test_too_few_labels_train_by_em() -> None:
    _, training, dirty, _ = _world()
    linked, report = _run(training.head(20), dirty.select(RECORD_SCHEMA.names()))
    assert report.training == "em" and report.n_training_pairs == 0
    right, wrong = _recall(linked, dirty.select("record_id", "person_id"))
    assert wrong == 0 and right >= 0.9 * dirty.height
    # EM learned that names mostly agree among matches, and birth dates almost always
    m = {(p["comparison"], p["label"]): p["m"] for p in report.parameters}
    assert m[("ln", "exact key")] > 0.5 and m[("bd", "exact")] > 0.5


def test_no_labels_at_all_still_trains() -> None:
    _, training, dirty, _ = _world()
    linked, report = _run(training.head(0), dirty.select(RECORD_SCHEMA.names()))
    assert report.training == "em"
    assert _recall(linked, dirty.select("record_id", "person_id"))[1] == 0


def test_training_is_deterministic_for_a_seed() -> None:
    _, training, dirty, _ = _world()
    records = dirty.select(RECORD_SCHEMA.names())
    a = _run(training.head(20), records, seed=9)[1]
    b = _run(training.head(20), records, seed=9)[1]
    assert a.to_json() == b.to_json()
    c = _run(training, records, seed=9)[1]
    d = _run(training, records, seed=9)[1]
    assert c.to_json() == d.to_json()


def test_extra_fields_are_compared() -> None:
    _, training, dirty, streets = _world()
    with_street = dirty.join(streets, on="person_id", how="left")
    train = training.join(streets, on="person_id", how="left")
    linked, report = _run(
        train, with_street.select(*RECORD_SCHEMA.names(), "street"),
        compare={"street": "text"}, register_fields=streets, block=("street",),
    )  # fmt: skip
    assert report.compare == (("street", "text"),) and report.block == ("street",)
    levels = [p for p in report.parameters if p["comparison"] == "x_street"]
    exact = next(p for p in levels if p["label"] == "exact")
    assert exact["bayes_factor"] > 10 and exact["tf_adjustment_column"] == "x_street"
    assert (
        "l.x_street = r.x_street"
        in report.model["blocking_rules_to_generate_predictions"][-1]["blocking_rule"]
    )
    assert _recall(linked, dirty.select("record_id", "person_id"))[1] == 0


def test_extra_fields_through_resolve() -> None:
    register, training, dirty, streets = _world()
    records = pl.concat([training.drop("person_id"), dirty.drop("person_id")]).join(
        streets.rename({"person_id": "fnr"}), on="fnr", how="left"
    )
    records = records.with_columns(
        pl.coalesce("street", pl.lit("Gate 1")).alias("street")
    )  # fmt: skip
    result = resolve(
        records, register, probabilistic=probabilistic, seed=2,
        compare={"street": "exact"}, register_fields=streets,
    )  # fmt: skip
    assert isinstance(result.model, ModelReport)
    assert result.model.compare == (("street", "exact"),)
    assert result.counts["records"] == records.height
    with pytest.raises(ColumnError):
        resolve(records.drop("street"), register, probabilistic=probabilistic,
                compare={"street": "text"}, register_fields=streets)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "kind", "block"),
    [("Street", "text", ()), ("street;drop", "text", ()), ("street", "fuzzy", ()),
     ("street", "text", ("postcode",))],
)  # fmt: skip
def test_bad_extra_fields_are_usage_errors(field: str, kind: str, block: tuple[str, ...]) -> None:
    with pytest.raises(UsageError) as caught:
        model.settings(0.001, {field: kind}, block)
    assert "drop" not in str(caught.value)


def test_extra_comparison_levels() -> None:
    assert COMPARE_KINDS == ("text", "exact")
    text = model.extra_comparison("street", "text")
    exact = model.extra_comparison("street", "exact")
    assert text["output_column_name"] == "x_street"
    assert [lv["label_for_charts"] for lv in text["comparison_levels"]] == [
        "null", "exact", "jaro-winkler>=0.92", "jaro-winkler>=0.8", "else"]  # fmt: skip
    assert [lv["label_for_charts"] for lv in exact["comparison_levels"]] == [
        "null", "exact", "else"]  # fmt: skip
    assert len(model.comparisons({"street": "text"})) == len(model.COMPARISONS) + 1


def _cli_world(tmp_path: Path) -> tuple[Path, Path]:
    """A register directory with compare.parquet (streets) and a records CSV with a street."""
    register, _, dirty, streets = _world()
    root = tmp_path / "register"
    root.mkdir()
    register.persons.write_parquet(root / REGISTER_FILES["persons"])
    register.names.write_parquet(root / REGISTER_FILES["names"])
    register.addresses.write_parquet(root / REGISTER_FILES["addresses"])
    streets.write_parquet(root / COMPARE_REGISTER_FILE)
    records = dirty.head(120).join(streets, on="person_id").drop("person_id")
    path = tmp_path / "records.csv"
    records.write_csv(path)
    return root, path


def test_cli_compare_and_block(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from koble.cli.main import cli

    root, path = _cli_world(tmp_path)
    out = tmp_path / "resolved.parquet"
    args = [str(path), "--population", str(root), "--out", str(out), "--compare",
            "street:exact", "--block", "street", "--seed", "3"]  # fmt: skip
    env = {"KOBLE_ACTOR": "tove.ttp"}
    result = CliRunner().invoke(cli, ["resolve", *args], env=env)
    assert result.exit_code in (0, 1), result.output
    assert pl.read_parquet(out).height > 100
    report = json.loads((tmp_path / "resolved.resolution.json").read_text())
    assert "x_street" in json.dumps(report)
    assert "Gate" not in result.output
    bad = CliRunner().invoke(cli, ["resolve", *args[:6], "--compare", "floor"], env=env)
    assert bad.exit_code == 2 and "floor" in bad.output
    bad = CliRunner().invoke(cli, ["resolve", *args[:6], "--compare", "street:fuzzy"], env=env)
    assert bad.exit_code == 2
