"""``helsearkiv.parquet``: a Helsearkivregisteret-like table of deceased patients' journals,
with the dirt digitisation leaves, and ``truth/helsearkiv.parquet`` saying what is true.

Journals belong to persons who died (``helsearkiv_journals`` of them, by default two per
deceased person on average; each drawn uniformly among the deceased). A journal spans a
stretch of the patient's life (half of them in the last five years), was kept at a hospital
of the patient's fylke (85 %) or anywhere, and carries a diagnosis (NPR's codes by age and
sex). It shows the name in force when it was opened and the number in force when it was
closed; numbers exist from 1964, so older journals have none.

Dirt, each rate a share of the journals where the dirt can apply (SynthConfig ``helsearkiv_*``):

* number: missing (``missing_fnr`` from 2000, four times that for 1964-1999 paper
  journals, always before 1964); else one of a single-digit substitution, an adjacent
  transposition (two different digits) or an OCR confusion (1/7, 0/8), exclusive. A dirty
  number may be valid by chance: ``fnr_valid`` in the truth says which.
* names: the earlier (maiden) name used after a name event; the middle name left out;
  first and last name swapped; æ/ø/å written ae/o/aa; an OCR confusion (rn/m, li/h).
* birth date: day and month swapped (days 1-12 other than the month).

The truth has one row per journal: journal_id, person_id (current id), true_fnr (null before
1964) and one boolean per dirt kind; ``earlier_name`` marks every journal showing an earlier
name (a journal opened before the event shows it rightly).
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from koble.synth import typos
from koble.synth.codes import NPR
from koble.synth.config import SynthConfig
from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, NEVER, day, days_to_arrow
from koble.synth.names import PersonNames, render, spell_out
from koble.synth.numbers import format_ids
from koble.synth.output import labels
from koble.synth.rng import stream

__all__ = ["DIRT", "SCHEMA", "TRUTH", "journals"]

SCHEMA = pa.schema([
    ("journal_id", pa.string()), ("orgnr", pa.string()), ("fnr", pa.string()),
    ("first_name", pa.string()), ("middle_name", pa.string()), ("last_name", pa.string()),
    ("birth_date", pa.date32()), ("death_date", pa.date32()), ("sex", pa.string()),
    ("first_contact", pa.date32()), ("last_contact", pa.date32()), ("diagnosis", pa.string()),
])  # fmt: skip
#: dirt kinds, each a boolean column of the truth
DIRT = (
    "fnr_missing", "fnr_digit", "fnr_transposition", "fnr_ocr", "maiden_name", "middle_missing",
    "name_swap", "ascii_letters", "ocr_name", "date_swap",
)  # fmt: skip
TRUTH = pa.schema(
    [("journal_id", pa.string()), ("person_id", pa.string()), ("true_fnr", pa.string())]
    + [(name, pa.bool_()) for name in DIRT]
    + [("no_number_yet", pa.bool_()), ("fnr_valid", pa.bool_()), ("earlier_name", pa.bool_())]
)
#: fødselsnummer exist from 1964; journals from 2000 on were kept electronically
NUMBERS_FROM = day(datetime.date(1964, 1, 1))
ELECTRONIC_FROM = day(datetime.date(2000, 1, 1))
PAPER_FACTOR = 4.0
_LOCAL = 0.85
_OCR_NAME = (("rn", "m"), ("m", "rn"), ("li", "h"), ("h", "li"))
I64 = npt.NDArray[np.int64]


def _number_dirt(
    rng: np.random.Generator, true: I64, kind: I64
) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Numbers with ``kind`` 1 digit, 2 transposition, 3 OCR applied; and whether it was."""
    out = true.copy()
    applied = np.zeros(len(true), dtype=bool)
    for code, damage in ((1, typos.substitute), (2, typos.transpose), (3, typos.ocr)):
        rows = np.flatnonzero(kind == code)
        out[rows], applied[rows] = damage(rng, true[rows])
    return out, applied


def _name_dirt(
    rng: np.random.Generator, cfg: SynthConfig, frame: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, npt.NDArray[np.bool_]]]:
    """Middle name dropped, first and last swapped, æøå spelt out, an OCR confusion."""
    n = frame.height
    truth: dict[str, npt.NDArray[np.bool_]] = {}
    has_middle = frame["middle_name"].is_not_null().to_numpy()
    truth["middle_missing"] = has_middle & (rng.random(n) < cfg.helsearkiv_no_middle)
    swap = rng.random(n) < cfg.helsearkiv_name_swap
    truth["name_swap"] = swap
    frame = frame.with_columns(
        pl.when(pl.Series(truth["middle_missing"])).then(None).otherwise(pl.col("middle_name"))
        .alias("middle_name"),
        pl.when(pl.Series(swap)).then(pl.col("last_name")).otherwise(pl.col("first_name"))
        .alias("first_name"),
        pl.when(pl.Series(swap)).then(pl.col("first_name")).otherwise(pl.col("last_name"))
        .alias("last_name"),
    )  # fmt: skip
    names = ["first_name", "middle_name", "last_name"]
    frame, truth["ascii_letters"] = spell_out(frame, names, rng, cfg.helsearkiv_ascii)
    # OCR in the last name where it has a confusable pair, else in the first name
    has = {
        c: frame.select(
            pl.any_horizontal(pl.col(c).str.contains(a, literal=True) for a, _ in _OCR_NAME)
        ).to_series().fill_null(False).to_numpy()
        for c in ("first_name", "last_name")
    }  # fmt: skip
    ocr = (has["first_name"] | has["last_name"]) & (rng.random(n) < cfg.helsearkiv_ocr_name)
    truth["ocr_name"] = ocr
    for c, rows in (("last_name", ocr & has["last_name"]), ("first_name", ocr & ~has["last_name"])):
        col = pl.col(c)
        fix = col  # the first confusable pair in _OCR_NAME's order, replaced once
        for a, b in reversed(_OCR_NAME):
            fix = (
                pl.when(col.str.contains(a, literal=True))
                .then(col.str.replace(a, b, literal=True))
                .otherwise(fix)
            )
        frame = frame.with_columns(pl.when(pl.Series(rows)).then(fix).otherwise(col).alias(c))
    return frame, truth


def journals(
    world: World, names: PersonNames
) -> tuple[dict[str, pa.Array], dict[str, pa.Array], dict[str, Any]]:
    """The journal columns, the truth columns, and the counts for the manifest."""
    rng = stream(world.cfg.seed, "helsearkiv")
    cfg, d = world.cfg, world.demo
    dead = np.flatnonzero(d.death != NEVER).astype(np.int64)
    n = 2 * len(dead) if cfg.helsearkiv_journals is None else cfg.helsearkiv_journals
    n = n if len(dead) else 0
    person = np.sort(dead[rng.integers(0, max(len(dead), 1), size=n)])
    birth, death = d.birth[person].astype(np.int64), d.death[person].astype(np.int64)
    arrival = names.arrival[person].astype(np.int64)  # journals are kept in Norway
    late = rng.random(n) < 0.5
    lo = np.where(late, np.maximum(death - int(5 * DAYS_PER_YEAR), arrival), arrival)
    first = lo + (rng.random(n) * (death - lo + 1)).astype(np.int64)
    last = np.minimum(first + rng.exponential(1.5 * DAYS_PER_YEAR, n).astype(np.int64), death)
    fylke = world.fylke(person)
    local = rng.random(n) < _LOCAL
    hospital = np.where(
        local, world.pools.hospitals.local(rng, fylke), world.pools.hospitals.anywhere(rng, n)
    )
    male = d.male[person]
    diagnosis = NPR.sample(rng, (last - birth) / DAYS_PER_YEAR, male)
    # the number in force when the journal was closed; none before 1964
    true_fnr = world.ids.at(person, last.astype(np.int32))
    no_number = last < NUMBERS_FROM
    p_missing = np.where(last >= ELECTRONIC_FROM, 1.0, PAPER_FACTOR) * cfg.helsearkiv_missing_fnr
    missing = no_number | (rng.random(n) < np.minimum(p_missing, 1.0))
    u = rng.random(n)
    rates = np.cumsum(
        [cfg.helsearkiv_fnr_digit, cfg.helsearkiv_fnr_transposition, cfg.helsearkiv_fnr_ocr]
    )
    kind = np.where(missing, 0, np.searchsorted(rates, u, side="right") + 1)
    kind[kind > 3] = 0
    written, applied = _number_dirt(rng, true_fnr, kind)
    fnr = format_ids(pa.array(written, pa.int64(), mask=missing))
    valid = typos.valid(written)
    # names: the one in force when the journal was opened, or (dirt) the earlier one
    event_day = names.event_day[person].astype(np.int64)
    had_event = event_day <= first  # no event: NEVER
    maiden = had_event & (rng.random(n) < cfg.helsearkiv_maiden)
    earlier = ((first < event_day) & (names.event[person] > 0)) | maiden
    frame = pl.from_arrow(pa.table(render(names, person, earlier)))
    assert isinstance(frame, pl.DataFrame)
    frame, name_truth = _name_dirt(rng, cfg, frame)
    dd = d.birth[person].astype("datetime64[D]")
    month = dd.astype("datetime64[M]").astype(np.int64) % 12 + 1
    mday = (dd - dd.astype("datetime64[M]")).astype(np.int64) + 1
    swap = (mday <= 12) & (mday != month) & (rng.random(n) < cfg.helsearkiv_date_swap)
    year = dd.astype("datetime64[Y]")
    swapped = (year.astype("datetime64[M]") + (mday - 1).astype("timedelta64[M]")).astype(
        "datetime64[D]"
    ) + (month - 1).astype("timedelta64[D]")
    shown_birth = np.where(swap, swapped.astype(np.int64), birth).astype(np.int32)
    # archive order: by hospital, then by opening day; ids numbered in that order
    order = np.lexsort((person, first, hospital))
    ids = pc.binary_join_element_wise("HA", format_ids(np.arange(1, n + 1, dtype=np.int64), 8), "")
    take = pa.array(order)
    cols: dict[str, pa.Array] = {
        "journal_id": ids,
        "orgnr": format_ids(world.pools.hospitals.numbers[hospital[order]], 9),
        "fnr": fnr.take(take),
        "first_name": frame["first_name"].to_arrow().take(take),
        "middle_name": frame["middle_name"].to_arrow().take(take),
        "last_name": frame["last_name"].to_arrow().take(take),
        "birth_date": days_to_arrow(shown_birth[order]),
        "death_date": days_to_arrow(death[order].astype(np.int32)),
        "sex": labels(["F", "M"], male[order]),
        "first_contact": days_to_arrow(first[order].astype(np.int32)),
        "last_contact": days_to_arrow(last[order].astype(np.int32)),
        "diagnosis": labels(NPR.codes, diagnosis[order]),
    }
    flags = {
        "fnr_missing": missing,
        "fnr_digit": applied & (kind == 1),
        "fnr_transposition": applied & (kind == 2),
        "fnr_ocr": applied & (kind == 3),
        "maiden_name": maiden,
        **name_truth,
        "date_swap": swap,
        "no_number_yet": no_number,
    }
    truth: dict[str, pa.Array] = {
        "journal_id": ids,
        "person_id": format_ids(world.ids.current[person[order]]),
        "true_fnr": format_ids(pa.array(true_fnr[order], pa.int64(), mask=no_number[order])),
    }
    truth.update({k: pa.array(v[order]) for k, v in flags.items()})
    truth["fnr_valid"] = pa.array(valid[order], mask=missing[order])
    truth["earlier_name"] = pa.array(earlier[order])
    counts: dict[str, Any] = {"journals": n, "persons": len(np.unique(person))}
    counts.update({k: int(v.sum()) for k, v in flags.items()})
    dirty_number = (kind > 0) & applied
    counts["fnr_dirty_valid_by_chance"] = int((dirty_number & valid).sum())
    counts["earlier_name"] = int(earlier.sum())
    return cols, truth, counts
