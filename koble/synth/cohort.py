"""``cohort.parquet``: a health survey like 40-åringsundersøkelsene, with deliberate dirt.

Participants are persons alive and aged 40-45 on a survey day drawn in
[survey_start, survey_end]; their ``fnr`` is the id in force that day. Survey variables have
plausible sex-specific distributions and a few per cent missing. The fnr column is then
dirtied on disjoint sets of rows, exactly as configured and recorded in the manifest's
``truth``:

* ``wrong_check_digit``: the *second* check digit replaced by another digit, so the number
  is certainly invalid (changing k1 could yield a number valid under the 2032 rule);
* ``separators``: ``DDMMYY IIIKK`` or ``DDMMYY-IIIKK`` (valid after compaction);
* ``missing``: null;
* ``duplicate_rows``: exact copies of clean rows, appended; finally rows are shuffled;
* ``typo`` (``dirt_typo``, 0 by default): rows that were clean and not duplicated whose
  number has one digit replaced or two adjacent digits swapped, so it is invalid.

Each participant also writes their name (the one in force on the survey day) and birth
date, with a little dirt: æ/ø/å as ae/o/aa (``cohort_ascii_names``), the middle name left
out (``cohort_no_middle``). Everything added since the first version draws from streams of
its own (``cohort/typo``, ``cohort/names``), so the other columns keep their bytes.
:func:`cohort` also returns ``truth/cohort.parquet``: per row, the person, the number in
force on the survey day and the dirt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from koble.synth.context import World
from koble.synth.dates import DAYS_PER_YEAR, day, days_to_arrow
from koble.synth.names import PersonNames, render, spell_out
from koble.synth.numbers import format_ids
from koble.synth.output import labels
from koble.synth.rng import stream
from koble.synth.typos import invalid_typos

__all__ = ["DIRT", "SCHEMA", "TRUTH", "cohort"]

SCHEMA = pa.schema([
    ("fnr", pa.string()), ("survey_date", pa.date32()), ("height_cm", pa.float64()),
    ("weight_kg", pa.float64()), ("systolic_bp", pa.int16()), ("diastolic_bp", pa.int16()),
    ("cholesterol", pa.float64()), ("smoking", pa.string()), ("physical_activity", pa.string()),
    ("self_rated_health", pa.string()), ("first_name", pa.string()),
    ("middle_name", pa.string()), ("last_name", pa.string()), ("birth_date", pa.date32()),
])  # fmt: skip
#: the dirt of a row of the truth (``clean``: none; ``duplicate``: the appended copy)
DIRT = ("clean", "wrong_check_digit", "separators", "missing", "duplicate", "typo")
TRUTH = pa.schema([
    ("row", pa.int64()), ("person_id", pa.string()), ("true_fnr", pa.string()),
    ("dirt", pa.string()), ("ascii_names", pa.bool_()), ("middle_missing", pa.bool_()),
])  # fmt: skip
SMOKING = ("never", "former", "occasional", "daily")
ACTIVITY = ("sedentary", "light", "moderate", "vigorous")
HEALTH = ("poor", "fair", "good", "very_good")


def _measures(rng: np.random.Generator, male: np.ndarray) -> dict[str, pa.Array]:
    n = len(male)
    height = np.where(male, rng.normal(180.5, 6.8, n), rng.normal(167.0, 6.2, n))
    bmi = np.exp(rng.normal(np.where(male, np.log(26.5), np.log(25.3)), 0.15))
    weight = bmi * (height / 100) ** 2
    systolic = 116 + 7 * male + 0.9 * (bmi - 25) + rng.normal(0, 13, n)
    diastolic = 0.45 * systolic + 22 + rng.normal(0, 7, n)
    chol = np.clip(rng.normal(5.3, 0.95, n), 2.5, 10.0)

    def gaps(share: float) -> np.ndarray:
        return rng.random(n) < share

    def cat(values: tuple[str, ...], p: list[float], share: float) -> pa.Array:
        codes = rng.choice(len(values), size=n, p=p)
        return pa.array(np.array(values, dtype=object)[codes], mask=gaps(share), type=pa.string())

    return {
        "height_cm": pa.array(np.round(height, 1), mask=gaps(0.01)),
        "weight_kg": pa.array(np.round(weight, 1), mask=gaps(0.02)),
        "systolic_bp": pa.array(np.round(systolic).astype(np.int16), mask=gaps(0.03)),
        "diastolic_bp": pa.array(np.round(diastolic).astype(np.int16), mask=gaps(0.03)),
        "cholesterol": pa.array(np.round(chol, 1), mask=gaps(0.05)),
        "smoking": cat(SMOKING, [0.5, 0.25, 0.07, 0.18], 0.02),
        "physical_activity": cat(ACTIVITY, [0.15, 0.35, 0.35, 0.15], 0.03),
        "self_rated_health": cat(HEALTH, [0.03, 0.15, 0.5, 0.32], 0.02),
    }


def _names(
    world: World, names: PersonNames, chosen: np.ndarray, when: np.ndarray
) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
    """The name each participant writes (the one in force on the survey day), with æ/ø/å
    spelt out and the middle name left out on some rows (stream ``cohort/names``)."""
    rng = stream(world.cfg.seed, "cohort/names")
    cfg, k = world.cfg, len(chosen)
    earlier = (names.event[chosen] > 0) & (when < names.event_day[chosen])
    frame = pl.from_arrow(pa.table(render(names, chosen, earlier)))
    assert isinstance(frame, pl.DataFrame)
    cols = ["first_name", "middle_name", "last_name"]
    frame, ascii_rows = spell_out(frame, cols, rng, cfg.cohort_ascii_names)
    no_middle = frame["middle_name"].is_not_null().to_numpy() & (
        rng.random(k) < cfg.cohort_no_middle
    )
    frame = frame.with_columns(
        pl.when(pl.Series(no_middle))
        .then(None)
        .otherwise(pl.col("middle_name"))
        .alias("middle_name")
    )
    return {c: frame[c].to_arrow() for c in cols}, ascii_rows, no_middle


def cohort(
    world: World, names: PersonNames
) -> tuple[dict[str, pa.Array], dict[str, Any], dict[str, pa.Array]]:
    """The cohort columns, the truth about the dirt injected into them (counts), and the
    per-row truth (``TRUTH``)."""
    rng = stream(world.cfg.seed, "cohort")
    cfg, d = world.cfg, world.demo
    start, end = day(cfg.survey_start), day(cfg.survey_end)
    # Each person's window of survey days: aged 40-45, inside the survey period, alive.
    first = np.maximum(d.birth + np.ceil(40 * DAYS_PER_YEAR), start)
    last = np.minimum(np.minimum(d.birth + np.floor(46 * DAYS_PER_YEAR) - 1, end), d.death - 1)
    survey = (first + rng.random(d.size) * np.maximum(last - first + 1, 0)).astype(np.int32)
    eligible = np.flatnonzero(last >= first)
    k = min(cfg.cohort_rows, len(eligible))
    chosen = np.sort(rng.choice(eligible, size=k, replace=False)).astype(np.int64)
    when = survey[chosen]
    ids = world.ids.at(chosen, when)
    true_ids = ids.copy()
    counts = [round(r * k) for r in (cfg.dirt_wrong_check_digit, cfg.dirt_separators)]
    counts.append(round(cfg.dirt_missing * k))
    n_wrong, n_sep, n_missing = counts
    perm = rng.permutation(k)
    wrong = perm[:n_wrong]
    sep = perm[n_wrong : n_wrong + n_sep]
    missing = perm[n_wrong + n_sep : n_wrong + n_sep + n_missing]
    clean = perm[n_wrong + n_sep + n_missing :]
    k2 = ids[wrong] % 10
    ids[wrong] += (k2 + rng.integers(1, 10, size=len(wrong))) % 10 - k2
    hyphen = rng.random(len(sep)) < 0.5
    text = pl.Series("fnr", format_ids(ids))
    sep_text = text.gather(sep)
    joined = pl.select(
        pl.concat_str(
            sep_text.str.slice(0, 6),
            pl.Series(np.where(hyphen, "-", " ")),
            sep_text.str.slice(6),
        )
    ).to_series()
    text = text.scatter(sep, joined).scatter(missing, None)
    n_dup = min(round(cfg.dirt_duplicate * k), len(clean))
    dup = np.sort(rng.choice(clean, size=n_dup, replace=False)) if n_dup else clean[:0]
    rows = np.concatenate([np.arange(k), dup])
    shuffle = rng.permutation(len(rows))
    rows = rows[shuffle]
    measures = _measures(rng, d.male[chosen])
    # typos: from the rows still clean (not duplicated), on a stream of their own
    typo_rng = stream(cfg.seed, "cohort/typo")
    spare = np.setdiff1d(clean, dup)
    n_typo = min(round(cfg.dirt_typo * k), len(spare))
    typo = np.sort(typo_rng.choice(spare, size=n_typo, replace=False)) if n_typo else spare[:0]
    typo_ids, transposed = invalid_typos(typo_rng, ids[typo])
    if n_typo:
        text = text.scatter(typo, pl.Series(format_ids(typo_ids)))
    clean = np.setdiff1d(clean, typo)
    cols: dict[str, pa.Array] = {
        "fnr": text.to_arrow().take(pa.array(rows)),
        "survey_date": days_to_arrow(when[rows]),
    }
    cols.update({name: arr.take(pa.array(rows)) for name, arr in measures.items()})
    written, ascii_rows, no_middle = _names(world, names, chosen, when)
    cols.update({name: arr.take(pa.array(rows)) for name, arr in written.items()})
    cols["birth_date"] = days_to_arrow(d.birth[chosen][rows])
    dirt = np.zeros(k, dtype=np.int64)
    for code, where in ((1, wrong), (2, sep), (3, missing), (5, typo)):
        dirt[where] = code
    row_truth = {
        "row": pa.array(np.arange(len(rows), dtype=np.int64)),
        "person_id": format_ids(world.ids.current[chosen[rows]]),
        "true_fnr": format_ids(true_ids[rows]),
        "dirt": labels(DIRT, np.where(shuffle >= k, 4, dirt[rows])),
        "ascii_names": pa.array(ascii_rows[rows]),
        "middle_missing": pa.array(no_middle[rows]),
    }
    is_old = ids[clean] != world.ids.current[chosen[clean]]
    truth = {
        "rows": len(rows),
        "persons": int(k),
        "eligible_persons": len(eligible),
        "wrong_check_digit": int(n_wrong),
        "separators": int(n_sep),
        "separators_space": int((~hyphen).sum()),
        "separators_hyphen": int(hyphen.sum()),
        "missing": int(n_missing),
        "duplicate_rows": int(n_dup),
        "clean_rows_with_old_id": int(is_old.sum()),
        "clean_rows_2032_rule": int((world.ids.rule2032[chosen[clean]] & ~is_old).sum()),
        "typo": int(n_typo),
        "typo_transposition": int(transposed.sum()),
        "typo_substitution": int(n_typo - transposed.sum()),
        "ascii_names": int(ascii_rows.sum()),
        "middle_missing": int(no_middle.sum()),
    }
    return cols, truth, row_truth
