"""Stage 2, repaired number: one typing error away from exactly one agreeing person.

A record whose 11-digit number did not link exactly may hold a registered person's number
with one digit mistyped or two adjacent digits swapped. Its candidates are every number one
edit away (10 digits at each of 11 positions, 10 adjacent transpositions) that passes the
check digits. They are found by arithmetic on a digit array (numpy, in blocks of records),
not by writing 109 strings per record: a candidate's check sums are the record's plus the
edit's weighted difference, so at each position exactly one new digit (mod 11) satisfies the
second check digit, which both the classic and the 2032 rule require, and is computed
directly; its first-check-digit residue must then be one the rules allow (0, or 1-3 under
the 2032 rule). The survivors are joined with the register's numbers, and those found are
validated as a column by the same validator every other step uses (which decides the 2032
rule by number class, and checks the date part); the tests check that this finds exactly
what validating all 109 strings would. Both check digits catch every single substitution and
adjacent transposition (the weights and adjacent weight differences are non-zero mod 11),
so the true number is always among a typo's candidates, and its neighbours are few (two
valid numbers differ in at least three digits but for rare position pairs and the 2032
rule).

Candidates are joined with the register's numbers (old numbers resolve to the current one)
and kept when the person agrees with the record: birth date and sex equal where the record
has them, and, where the record has a name, its normalised last name or first name equal to
one of the person's names at any time (so a maiden name counts; first and last written
swapped also count), with :func:`koble.recovery.normalise.name_key`. A record with neither a
name nor a birth date is not repaired (a number alone cannot tell the typo's person).

Exactly one agreeing person: linked, method ``repaired``, probability 1.0. Several: left to
the next stage, marked ``ambiguous``. None: left to the next stage unmarked.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.recovery.contract import RECORD_SCHEMA, REJECT_SCHEMA, StageResult, empty
from koble.recovery.exact import REVIEW_BASE, agrees, certain
from koble.recovery.normalise import name_key
from koble.recovery.register import Register
from koble.registries.identifiers._rules import K1_WEIGHTS, K2_WEIGHTS, RESIDUES_2032
from koble.registries.identifiers.column import validate_column

__all__ = ["candidates", "repair"]

I64 = npt.NDArray[np.int64]
_W1 = np.array([*K1_WEIGHTS, 1, 0], dtype=np.int16)  # first check: digits 1-10, 11th unused
_W2 = np.array([*K2_WEIGHTS, 1], dtype=np.int16)  # second check digit: all 11 digits
_INVERSE = np.array([0] + [pow(k, -1, 11) for k in range(1, 11)], dtype=np.int16)  # mod 11
_MAX_RESIDUE = max(RESIDUES_2032)  # first-check residues the 2032 rule accepts: 0-3
_POWER = 10 ** np.arange(10, -1, -1, dtype=np.int64)  # place value of each of the 11 digits
# what a transposition of p and p+1 does per unit of d[p+1] - d[p]: to the sums, to the value
_W1_STEP, _W2_STEP = _W1[:-1] - _W1[1:], _W2[:-1] - _W2[1:]
_PLACE = np.concatenate([_POWER, _POWER[:-1] - _POWER[1:]])  # value change per unit, 21 edits
_BLOCK = 1 << 16  # records per block: the (block, 11) temporaries stay in the cache


def _edits(numbers: I64) -> tuple[I64, I64]:
    """(index into ``numbers``, candidate) for every one-edit neighbour of each number whose
    check sums the rules can accept (module docstring); the validator has the last word."""
    digits = ((numbers[:, None] // _POWER) % 10).astype(np.int16)  # (n, 11)
    r1 = (digits * _W1).sum(axis=1, dtype=np.int16) % 11
    r2 = (digits * _W2).sum(axis=1, dtype=np.int16) % 11
    # substitution at p by v: W2[p] * (v - d[p]) = -r2 (mod 11) has one solution v (mod 11)
    shift = ((11 - r2)[:, None] * _INVERSE[_W2]) % 11  # (v - d[p]) mod 11, (n, 11)
    new = (digits + shift) % 11
    change = new - digits
    sub_ok = (shift != 0) & (new <= 9)
    sub_ok &= (r1[:, None] + 11 * 10 + _W1 * change) % 11 <= _MAX_RESIDUE
    # transposition of p and p+1: sums change by (W[p] - W[p+1]) * (d[p+1] - d[p])
    step = digits[:, 1:] - digits[:, :-1]  # (n, 10)
    swap_ok = (step != 0) & ((r2[:, None] + 11 * 10 + _W2_STEP * step) % 11 == 0)
    swap_ok &= (r1[:, None] + 11 * 10 + _W1_STEP * step) % 11 <= _MAX_RESIDUE
    row, column = np.nonzero(np.concatenate([sub_ok, swap_ok], axis=1))
    moved = np.concatenate([change, step], axis=1)[row, column].astype(np.int64)
    return row.astype(np.int64), numbers[row] + moved * _PLACE[column]


def _possible(numbers: pl.Series) -> pl.DataFrame:
    """``index`` (position in ``numbers``) and ``candidate`` (Int64) of every one-edit
    neighbour of each 11-digit value whose check sums may pass (not yet validated)."""
    text = numbers.cast(pl.String)
    usable = text.str.contains(r"^[0-9]{11}$").fill_null(False)
    index = np.flatnonzero(usable.to_numpy())
    values = text.filter(usable).cast(pl.Int64).to_numpy()
    starts = range(0, len(values), _BLOCK)
    parts = [_edits(values[i : i + _BLOCK]) for i in starts]
    none = [np.zeros(0, np.int64)]
    rows = np.concatenate([part[0] + i for part, i in zip(parts, starts, strict=True)] or none)
    found = np.concatenate([part[1] for part in parts] or none)
    return pl.DataFrame({"index": index[rows].astype(np.int64), "candidate": found})


def _valid(frame: pl.DataFrame, test_numbers: bool) -> pl.DataFrame:
    """The rows of ``frame`` whose ``candidate`` passes the fødselsnummer rules."""
    strings = frame["candidate"].cast(pl.String).str.zfill(11)
    return frame.filter(validate_column(strings, test_numbers=test_numbers)["valid"])


def candidates(numbers: pl.Series, *, test_numbers: bool = True) -> pl.DataFrame:
    """Every valid person number one substitution or one adjacent transposition away from
    each of ``numbers`` (11-digit strings): columns ``index`` (position in ``numbers``) and
    ``candidate`` (Int64). Values that are not 11 digits have none."""
    return _valid(_possible(numbers), test_numbers)


def _keyed(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """``frame`` with :func:`name_key` of each ``source: target`` column added, computed once
    per distinct name (a register repeats its common names millions of times)."""
    distinct = pl.concat([frame.select(pl.col(c).alias("name")) for c in columns]).unique()
    keys = distinct.drop_nulls().with_columns(name_key(pl.col("name")).alias("key"))
    for source, target in columns.items():
        renamed = keys.rename({"name": source, "key": target})
        frame = frame.join(renamed, on=source, how="left", maintain_order="left")
    return frame


def _gather(frame: pl.DataFrame, rows: pl.Series, columns: dict[str, str]) -> pl.DataFrame:
    """``frame``'s columns (``source: target``) at ``rows``, without a join."""
    return frame.select(pl.col(k).gather(rows).alias(v) for k, v in columns.items())


def repair(records: pl.DataFrame, register: Register, *, test_numbers: bool = True) -> StageResult:
    """Link the records whose number is one typing error from one agreeing person (see the
    module docstring); mark those with several as ``ambiguous``."""
    has_name = pl.col("first_name").is_not_null() | pl.col("last_name").is_not_null()
    rows = records.with_row_index("_row")
    eligible = rows.filter(has_name | pl.col("birth_date").is_not_null())
    # both sides sorted by number: polars merges instead of hashing 5.5 M register numbers
    possible = _possible(eligible["fnr"]).sort("candidate")
    found = possible.join(register.ids, left_on="candidate", right_on="id")
    found = _valid(found, test_numbers)  # one person twice (old and new number): counted once
    fields = {"_row": "_row", "birth_date": "birth_date", "sex": "sex",
              "first_name": "first_name", "last_name": "last_name"}  # fmt: skip
    ours = {"person_id": "person_id", "birth_date": "_p_birth", "sex": "_p_sex",
            "first_name": "_p_first_name", "last_name": "_p_last_name"}  # fmt: skip
    pairs = pl.concat(
        [
            _gather(eligible, found["index"], fields),
            _gather(register.persons, found["row"], ours),
        ],
        how="horizontal",
    ).filter(agrees("birth_date", "_p_birth") & agrees("sex", "_p_sex"))
    pairs = _name_agrees(pairs, register)
    per_record = pairs.group_by("_row").agg(
        pl.col("person_id").first(), pl.col("person_id").n_unique().alias("n")
    )
    one = per_record.filter(pl.col("n") == 1)
    several = per_record.filter(pl.col("n") > 1)
    linked = certain(rows.join(one, on="_row").sort("_row"), "repaired")
    pending = (
        rows.join(several, on="_row")
        .sort("_row")
        .select(
            "record_id",
            reason=pl.lit("ambiguous"),
            detail=pl.format("{} registered persons one typing error away agree", pl.col("n")),
        )
    )
    remaining = rows.join(one, on="_row", how="anti").sort("_row").select(RECORD_SCHEMA.names())
    return StageResult(
        linked=linked,
        rejected=empty(REJECT_SCHEMA),
        remaining=remaining,
        review=empty(REVIEW_BASE),
        pending=pending.cast(dict(REJECT_SCHEMA)),  # type: ignore[arg-type]
    )


def _agree(first: str, last: str) -> pl.Expr:
    """The record's last or first name key equals the person's ``last`` or ``first`` key
    (either way round: first and last names are written swapped)."""
    r_first, r_last, p_first, p_last = (pl.col(c) for c in ("_r_first", "_r_last", first, last))
    either = (r_last == p_last) | (r_first == p_first) | (r_first == p_last) | (r_last == p_first)
    return either.fill_null(False)


def _name_agrees(pairs: pl.DataFrame, register: Register) -> pl.DataFrame:
    """The (record, person) pairs whose names agree: the record has no name, or its last or
    first name key equals one of the person's names' keys, current (from the persons table)
    or earlier (from the name history, consulted only for the pairs the current name fails)."""
    pairs = _keyed(pairs, {"first_name": "_r_first", "last_name": "_r_last",
                           "_p_first_name": "_p_first", "_p_last_name": "_p_last"})  # fmt: skip
    unnamed = pl.col("_r_first").is_null() & pl.col("_r_last").is_null()
    ok = pairs.filter(unnamed | _agree("_p_first", "_p_last")).select("_row", "person_id")
    failing = pairs.filter(~unnamed & ~_agree("_p_first", "_p_last"))
    if failing.height == 0:
        return ok
    wanted = failing.select("person_id").unique()
    earlier = register.names.join(wanted, on="person_id", how="semi")
    earlier = earlier.select("person_id", "first_name", "last_name")
    earlier = _keyed(earlier, {"first_name": "_h_first", "last_name": "_h_last"})
    agreeing = (
        failing.select("_row", "person_id", "_r_first", "_r_last")
        .join(earlier.select("person_id", "_h_first", "_h_last"), on="person_id")
        .filter(_agree("_h_first", "_h_last"))
        .select("_row", "person_id")
        .unique()
    )
    return pl.concat([ok, agreeing])
