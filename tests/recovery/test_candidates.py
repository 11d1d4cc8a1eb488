"""Candidate pruning of the register: Splink sees fewer rows but never loses a blocked pair,
and term frequencies stay those of the whole register."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koble.recovery import candidates, model
from koble.recovery.contract import RECORD_SCHEMA
from koble.recovery.probabilistic import prepare_records, prepare_register
from koble.recovery.register import Register
from tests.recovery.synthetic_names import world

FIRST = ["Ole", "Åse", "Aase", "Kari-Anne", "Thor", "Tor", None]
LAST = ["Hansen", "Hanssen", "Sæther", "Sether", "Berg", "Bergh", None]
MIDDLE = [None, "Marie", "Johan"]
DAY0 = dt.date(1950, 1, 1)


def _pairs(recs: pl.DataFrame, rows: pl.DataFrame) -> set[tuple[str, str]]:
    """Every (record, register row) pair any blocking rule produces, by SQL as Splink runs it."""
    con = duckdb.connect()
    con.register("l_", recs.to_arrow())
    con.register("r_", rows.to_arrow())
    sql = " UNION ".join(
        f"SELECT l.unique_id AS a, r.unique_id AS b FROM l_ l JOIN r_ r ON {rule}"
        for rule in model.BLOCKING_RULES
    )
    found = {(str(a), str(b)) for a, b in con.execute(sql).fetchall()}
    con.close()
    return found


_person = st.tuples(
    st.sampled_from(FIRST),
    st.sampled_from(MIDDLE),
    st.sampled_from(LAST),
    st.one_of(st.none(), st.integers(0, 40)),
    st.sampled_from(["M", "F", None]),
    st.lists(st.tuples(st.sampled_from(FIRST), st.sampled_from(LAST)), max_size=2),
)
_record = st.tuples(
    st.sampled_from(FIRST),
    st.sampled_from(LAST),
    st.one_of(st.none(), st.integers(0, 60)),
    st.sampled_from(["M", "F", None]),
    st.one_of(st.none(), st.integers(0, 30).map(lambda i: f"P{i:03d}")),
)


def _register(people: list[tuple[object, ...]]) -> Register:
    persons = pl.DataFrame(
        {
            "person_id": [f"P{i:03d}" for i in range(len(people))],
            "first_name": [p[0] for p in people],
            "middle_name": [p[1] for p in people],
            "last_name": [p[2] for p in people],
            "birth_date": [
                None if p[3] is None else DAY0 + dt.timedelta(days=7 * int(p[3]))  # type: ignore[call-overload]
                for p in people
            ],
            "sex": [p[4] for p in people],
        },
        schema_overrides={
            "first_name": pl.String,
            "middle_name": pl.String,
            "last_name": pl.String,
            "birth_date": pl.Date,
            "sex": pl.String,
        },
    )
    history = [
        (f"P{i:03d}", first, None, last)
        for i, p in enumerate(people)
        for first, last in p[5]  # type: ignore[attr-defined]
    ]
    current = persons.select("person_id", "first_name", "middle_name", "last_name")
    old = pl.DataFrame(history, schema=current.schema, orient="row")
    names = pl.concat([current, old]).with_columns(
        pl.lit(None, pl.Date).alias("valid_from"),
        pl.lit(None, pl.Date).alias("valid_to"),
        pl.lit("change").alias("reason"),
    )
    return Register.from_frames(persons, names=names)


def _records(rows: list[tuple[object, ...]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "record_id": [f"R{i}" for i in range(len(rows))],
            "first_name": [r[0] for r in rows],
            "last_name": [r[1] for r in rows],
            "birth_date": [
                None if r[2] is None else DAY0 + dt.timedelta(days=7 * int(r[2]))  # type: ignore[call-overload]
                for r in rows
            ],
            "sex": [r[3] for r in rows],
            "fnr": [r[4] if len(r) > 4 else None for r in rows],
        },
        schema_overrides={
            "first_name": pl.String,
            "last_name": pl.String,
            "birth_date": pl.Date,
            "sex": pl.String,
            "fnr": pl.String,
        },
    )
    return frame.select(
        pl.col(c) if c in frame.columns else pl.lit(None, t).alias(c)
        for c, t in RECORD_SCHEMA.items()
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_person, min_size=1, max_size=25), st.lists(_record, min_size=1, max_size=8))
def test_pruning_never_loses_a_blocked_pair(
    people: list[tuple[object, ...]], rows: list[tuple[object, ...]]
) -> None:
    register = _register(people)
    recs = prepare_records(_records(rows))
    whole = prepare_register(register)
    keys = candidates.key_rows(register)
    wanted = candidates.candidate_persons(recs, keys)
    pruned = prepare_register(candidates.subset(register, wanted), keys=keys)
    assert _pairs(recs, pruned) == _pairs(recs, whole)
    # a kept person's rows are numbered as in the whole register
    assert pruned.sort("unique_id").equals(
        whole.filter(pl.col("entity_id").is_in(wanted.implode())).sort("unique_id")
    )


def test_pruning_drops_persons_no_rule_can_reach() -> None:
    register = _register([("Ole", None, "Hansen", 1, "M", []), ("Kari-Anne", None, "Berg", 30,
                                                                 "F", [])])  # fmt: skip
    recs = prepare_records(_records([("Ole", "Hanssen", None, "M")]))
    wanted = candidates.candidate_persons(recs, candidates.key_rows(register))
    assert wanted.to_list() == ["P000"]


def test_key_rows_are_the_prepared_rows_keys() -> None:
    persons, names, addresses = world(400, seed=3)
    register = Register.from_frames(persons, names=names, addresses=addresses)
    keys = candidates.key_rows(register)
    whole = prepare_register(register).rename({"entity_id": "person_id"})
    columns = list(candidates.KEY_COLUMNS)
    assert keys.sort(columns, nulls_last=True).equals(
        whole.select(columns).sort(columns, nulls_last=True)
    )


def test_term_frequencies_are_those_of_the_whole_register() -> None:
    persons, names, addresses = world(400, seed=3)
    register = Register.from_frames(persons, names=names, addresses=addresses)
    whole = prepare_register(register)
    tf = candidates.term_frequencies(candidates.key_rows(register))
    assert set(tf) == set(model.TF_COLUMNS)
    for column, table in tf.items():
        values = whole[column].drop_nulls()
        expected = (
            values.value_counts(name="n")
            .select(column, (pl.col("n") / values.len()).alias(f"tf_{column}"))
            .sort(column)
        )
        assert table.equals(expected)
    hansen = tf["ln_key"].filter(pl.col("ln_key") == "hansen")["tf_ln_key"].item()
    assert hansen > tf["ln_key"]["tf_ln_key"].median()  # type: ignore[operator]


def test_rules_parse_and_a_rule_that_is_no_equi_join_prunes_nothing() -> None:
    parsed = candidates.equi_join_rules(model.BLOCKING_RULES)
    assert parsed is not None and len(parsed) == len(model.BLOCKING_RULES)
    swapped = model.BLOCKING_RULES.index("l.fn_ph = r.ln_ph AND l.ln_ph = r.fn_ph")
    assert parsed[swapped] == candidates.Rule((("fn_ph", "ln_ph"), ("ln_ph", "fn_ph")))
    no_date = model.BLOCKING_RULES.index(
        "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph AND l.birth_date IS NULL"
    )
    assert parsed[no_date].left_null == ("birth_date",) and not parsed[no_date].right_null
    odd = ("l.birth_date = r.birth_date", "levenshtein(l.ln_key, r.ln_key) <= 1")
    assert candidates.equi_join_rules(odd) is None
    register = _register([("Ole", None, "Hansen", 1, "M", []), ("Tor", None, "Berg", 9, "M", [])])
    recs = prepare_records(_records([("Kari-Anne", "Sæther", 60, "F")]))
    keys = candidates.key_rows(register)
    assert candidates.candidate_persons(recs, keys).len() == 0
    assert candidates.candidate_persons(recs, keys, odd).to_list() == ["P000", "P001"]


def test_sample_persons_is_seeded_and_bounded() -> None:
    persons, names, addresses = world(300, seed=4)
    register = Register.from_frames(persons, names=names, addresses=addresses)
    a = candidates.sample_persons(register, 50, seed=1)
    b = candidates.sample_persons(register, 50, seed=1)
    assert a.persons.height == 50 and a.persons.equals(b.persons)
    assert set(a.names["person_id"]) <= set(a.persons["person_id"])
    assert candidates.sample_persons(register, 10_000, seed=1).persons.height == 300
    assert "Hansen" not in repr(a)


def test_places_are_the_sorted_distinct_kommuner_of_each_person() -> None:
    persons, names, addresses = world(300, seed=5)
    register = Register.from_frames(persons, names=names, addresses=addresses)
    every = pl.concat(
        [
            register.addresses.select("person_id", "kommune"),
            register.persons.select("person_id", "kommune"),
            register.persons.select("person_id", pl.col("birth_kommune").alias("kommune")),
        ]
    ).drop_nulls()
    expected = every.unique().group_by("person_id").agg(pl.col("kommune").sort().alias("places"))
    got = prepare_register(register).select(pl.col("entity_id").alias("person_id"), "places")
    got = got.unique("person_id").drop_nulls("places")
    assert got.sort("person_id").equals(expected.sort("person_id"))
    odd = Register.from_frames(
        persons.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit("x1"))
            .otherwise(pl.col("kommune"))
            .alias("kommune")
        ),
        names=names,
        addresses=addresses,
    )
    first = odd.persons["person_id"][0]
    places = prepare_register(odd).filter(pl.col("entity_id") == first)["places"][0].to_list()
    assert "x1" in places and places == sorted(places)


def _reference_register_rows(register: Register) -> pl.DataFrame:
    """The register preparation as it was before keys were reused (all of it, row by name)."""
    from koble.recovery.preparation import _COMPARED, _with_keys

    persons = register.persons
    current = persons.select("person_id", "first_name", "middle_name", "last_name")
    names = pl.concat([current, register.names.select(current.columns)]).unique()
    places = (
        pl.concat(
            [
                register.addresses.select("person_id", "kommune"),
                persons.select("person_id", "kommune"),
                persons.select("person_id", pl.col("birth_kommune").alias("kommune")),
            ]
        )
        .drop_nulls()
        .unique()
        .group_by("person_id")
        .agg(pl.col("kommune").sort().alias("places"))
    )
    rows = (
        names.join(persons.select("person_id", "birth_date", "sex", "death_date"), on="person_id")
        .pipe(_with_keys)
        .unique(subset=["person_id", "fn_key", "mn_key", "ln_key"], keep="first")
        .sort("person_id", "ln_key", "fn_key", "mn_key", nulls_last=True)
        .join(places, on="person_id", how="left", maintain_order="left")
    )
    rare = pl.len().over("rare_ph") <= candidates.RARE_NAME
    return rows.with_columns(
        pl.when(rare).then(pl.col("rare_ph")).alias("rare_ph"),
        (
            pl.col("person_id") + "#" + pl.int_range(pl.len()).over("person_id").cast(pl.String)
        ).alias("unique_id"),
        pl.col("person_id").alias("entity_id"),
        pl.lit("register").alias("source_dataset"),
        pl.col("person_id").alias("nr"),
    ).select(_COMPARED)


def test_prepared_register_is_the_row_by_name_preparation() -> None:
    persons, names, addresses = world(500, seed=8)
    register = Register.from_frames(persons, names=names, addresses=addresses)
    expected = _reference_register_rows(register).sort("unique_id")
    assert prepare_register(register).sort("unique_id").equals(expected)
    keys = candidates.key_rows(register)
    some = candidates.subset(register, persons["person_id"].head(120), names=False)
    got = prepare_register(some, keys=keys).sort("unique_id")
    assert got.equals(
        expected.filter(pl.col("entity_id").is_in(some.persons["person_id"].implode()))
    )


@pytest.mark.parametrize(
    ("option", "sizes"),
    [("chunk_records", (100_000, 7)), ("chunk_persons", (1_000_000, 13))],
    ids=["scoring in chunks", "loading the register in chunks"],
)
def test_working_in_chunks_gives_the_same_model_and_result(
    option: str, sizes: tuple[int, int]
) -> None:
    from koble.recovery.probabilistic import probabilistic
    from tests.recovery.test_probabilistic import THRESHOLDS, World

    w = World()
    runs = [
        probabilistic(w.records, w.register, training=w.training, thresholds=THRESHOLDS,
                      seed=3, **{option: size})  # type: ignore[arg-type]
        for size in sizes
    ]  # fmt: skip
    (one, report_one), (many, report_many) = runs
    assert one.linked.equals(many.linked) and one.rejected.equals(many.rejected)
    assert one.review.equals(many.review)
    assert report_one.model == report_many.model
    assert report_one.n_comparisons == report_many.n_comparisons > 0


def test_a_rare_name_pairs_whatever_the_birth_date_and_a_common_one_does_not() -> None:
    common: list[tuple[object, ...]] = [
        ("Ole", None, "Hansen", i, "M", []) for i in range(candidates.RARE_NAME + 1)
    ]
    register = _register([("Kari-Anne", None, "Sæther", 1, "F", []), *common])
    keys = candidates.key_rows(register)
    rare = keys.filter(pl.col("person_id") == "P000")["rare_ph"].item()
    assert rare == "kari ane/seter"
    assert keys.filter(pl.col("person_id") != "P000")["rare_ph"].null_count() == len(common)
    # birth dates far from every person's (another decade, another day and month)
    recs = prepare_records(_records([("Kari Anne", "Sether", 2000, "F"),
                                     ("Ole", "Hanssen", 2000, "M")]))  # fmt: skip
    assert candidates.candidate_persons(recs, keys).to_list() == ["P000"]
