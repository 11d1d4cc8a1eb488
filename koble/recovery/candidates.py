"""What of the register the probabilistic stage hands to Splink, and the statistics it keeps
from the whole register: candidate pruning, the u-sample and term frequencies.

At national scale the register (millions of persons, one row per person and name they have
had) dwarfs the records, and preparing all of it and loading it into Splink costs minutes and
gigabytes. Most of it can never be compared: a register row meets a record only through a
blocking rule, and every rule of :data:`koble.recovery.model.BLOCKING_RULES` is an equi-join
(some with a one-sided ``IS NULL`` filter). So, on whole columns:

:func:`key_rows`
    the register's name rows with only the cheap keys (name keys, phonetic keys, birth date
    parts, sex): one row per person and distinct name, as the full preparation has them.
:func:`candidate_persons`
    the persons with at least one row sharing a blocking key with some record (one semi-join
    per rule). All rows of such a person are kept, so a person's rows are numbered as in the
    whole register and no pair a rule would produce is lost.
:func:`term_frequencies`
    the frequency of each name key among all register rows (a group-by over the whole
    register): "Hansen" weighs as it does in the population, not among the candidates.
:func:`sample_persons`
    a seeded random sample of persons, for u-probabilities from random pairs of the whole
    register without preparing all of it.

:class:`SubRegister` carries a subset of the register's tables to
:func:`koble.recovery.probabilistic.prepare_register`. Nothing here logs or raises a name.
"""

from __future__ import annotations

import dataclasses
import re

import polars as pl

from koble.recovery import model
from koble.recovery.contract import RegisterLike
from koble.recovery.normalise import name_key, phonetic_key

__all__ = [
    "KEY_COLUMNS",
    "RARE_NAME",
    "Rule",
    "SubRegister",
    "birth_parts",
    "candidate_persons",
    "equi_join_rules",
    "key_rows",
    "name_sound",
    "sample_persons",
    "subset",
    "term_frequencies",
]

_NAME_PARTS = {"first_name": ("fn_key", "fn_ph"), "middle_name": ("mn_key",),
               "last_name": ("ln_key", "ln_ph")}  # fmt: skip
#: register-side columns :func:`key_rows` makes (what blocking rules may use)
KEY_COLUMNS = ("person_id", "fn_key", "mn_key", "ln_key", "fn_ph", "ln_ph", "birth_date",
               "bd_str", "bd_year", "bd_month", "bd_day", "bd_decade", "bd_day_tens",
               "bd_day_units", "sex", "nr", "rare_ph")  # fmt: skip
#: a first and last name sound shared by at most this many register rows is rare enough to
#: pair a record with its persons whatever their birth dates (``rare_ph``)
RARE_NAME = 20
_TERM = re.compile(r'^\s*l\."?(\w+)"?\s*=\s*r\."?(\w+)"?\s*$')
_NULL = re.compile(r'^\s*([lr])\."?(\w+)"?\s+IS\s+NULL\s*$', re.IGNORECASE)


def birth_parts(bd: pl.Expr) -> list[pl.Expr]:
    """The compared and blocking columns made from a birth date column: ``bd_str``
    (``YYYYMMDD``), ``bd_year``, ``bd_month``, ``bd_day``, ``bd_decade`` (year // 10) and
    the day's tens and units digits ``bd_day_tens``/``bd_day_units`` (a day one digit off
    keeps one of them). The same expressions for records and register."""
    day = bd.dt.day().cast(pl.Int32)
    return [
        bd.dt.strftime("%Y%m%d").alias("bd_str"),
        bd.dt.year().cast(pl.Int32).alias("bd_year"),
        bd.dt.month().cast(pl.Int32).alias("bd_month"),
        day.alias("bd_day"),
        (bd.dt.year().cast(pl.Int32) // 10).alias("bd_decade"),
        (day // 10).alias("bd_day_tens"),
        (day % 10).alias("bd_day_units"),
    ]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A blocking rule as :func:`equi_join_rules` reads it: the (record column, register
    column) equalities and the columns that must be null on the record (``left_null``) or
    the register side (``right_null``)."""

    equal: tuple[tuple[str, str], ...]
    left_null: tuple[str, ...] = ()
    right_null: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SubRegister:
    """Some persons of a register with their names and addresses (a ``RegisterLike``)."""

    persons: pl.DataFrame
    names: pl.DataFrame
    addresses: pl.DataFrame

    def __repr__(self) -> str:
        return f"SubRegister({self.persons.height} persons)"


def subset(register: RegisterLike, person_ids: pl.Series, *, names: bool = True) -> SubRegister:
    """The persons of ``person_ids`` with all their addresses and (unless ``names`` is
    false: for a preparation that reuses :func:`key_rows`) all their names."""
    ids = pl.DataFrame({"person_id": person_ids.unique()})
    every = register.names
    return SubRegister(
        persons=register.persons.join(ids, on="person_id", how="semi", maintain_order="left"),
        names=every.join(ids, on="person_id", how="semi", maintain_order="left")
        if names
        else every.clear(),
        addresses=register.addresses.join(ids, on="person_id", how="semi", maintain_order="left"),
    )


def sample_persons(register: RegisterLike, n: int, seed: int, *, names: bool = True) -> SubRegister:
    """``n`` persons drawn at random (``seed``) from the whole register, or all of them."""
    ids = register.persons["person_id"]
    if ids.len() > n:
        ids = ids.sample(n, seed=seed).sort()
    return subset(register, ids, names=names)


def name_sound(fn_ph: pl.Expr, ln_ph: pl.Expr) -> pl.Expr:
    """First and last name sound as one key (null when either is missing)."""
    return pl.concat_str(fn_ph, ln_ph, separator="/")


def key_rows(register: RegisterLike) -> pl.DataFrame:
    """One row per person and distinct (first, middle, last) name key, current name and name
    history alike, with :data:`KEY_COLUMNS`. Keys are computed once per distinct name.
    ``rare_ph`` is :func:`name_sound` where at most :data:`RARE_NAME` rows of this register
    share it, else null: so made on the whole register, never a part of it."""
    persons = register.persons
    cols = ["person_id", *_NAME_PARTS]
    names = pl.concat(
        [persons.select(cols), register.names.select(cols)], how="vertical_relaxed"
    ).unique()
    for column, outputs in _NAME_PARTS.items():
        raw = pl.col(column)
        exprs = {"fn_key": name_key(raw), "mn_key": name_key(raw), "ln_key": name_key(raw),
                 "fn_ph": phonetic_key(raw), "ln_ph": phonetic_key(raw)}  # fmt: skip
        lookup = names.select(raw.unique().drop_nulls()).with_columns(
            exprs[o].alias(o) for o in outputs
        )
        names = names.join(lookup, on=column, how="left").drop(column)
    names = names.unique(subset=["person_id", "fn_key", "mn_key", "ln_key"])
    sound = name_sound(pl.col("fn_ph"), pl.col("ln_ph"))
    names = names.with_columns(
        pl.when(pl.len().over(sound) <= RARE_NAME).then(sound).alias("rare_ph")
    )
    bd = pl.col("birth_date")
    born = persons.select(
        "person_id", "birth_date", *birth_parts(bd), "sex", pl.col("person_id").alias("nr")
    )
    return names.join(born, on="person_id").select(KEY_COLUMNS)


def equi_join_rules(rules: tuple[str, ...]) -> list[Rule] | None:
    """Each rule as a :class:`Rule`, or None when a rule is not a conjunction of
    ``l.a = r.b`` (at least one) and ``l.a IS NULL``/``r.b IS NULL`` over
    :data:`KEY_COLUMNS` on the register side (then nothing is pruned)."""
    parsed = []
    for rule in rules:
        equal, left_null, right_null = [], [], []
        for part in re.split(r"\s+AND\s+", rule.strip(), flags=re.IGNORECASE):
            match, null = _TERM.match(part), _NULL.match(part)
            if match is not None and match.group(2) in KEY_COLUMNS:
                equal.append((match.group(1), match.group(2)))
            elif null is not None and null.group(1) == "l":
                left_null.append(null.group(2))
            elif null is not None and null.group(2) in KEY_COLUMNS:
                right_null.append(null.group(2))
            else:
                return None
        if not equal:
            return None
        parsed.append(Rule(tuple(equal), tuple(left_null), tuple(right_null)))
    return parsed


def candidate_persons(
    records: pl.DataFrame, keys: pl.DataFrame, rules: tuple[str, ...] = model.BLOCKING_RULES
) -> pl.Series:
    """The person_ids with a row of ``keys`` (:func:`key_rows`) that some blocking rule pairs
    with some of ``records`` (prepared: :func:`koble.recovery.probabilistic.prepare_records`).

    SQL equality never holds for a null, and a polars join never matches nulls: the same
    pairs; an ``IS NULL`` term filters its side before the join. With a rule that is not
    such an equi-join every person is a candidate."""
    parsed = equi_join_rules(rules)
    if parsed is None or any(
        c not in records.columns for r in parsed for c in (*(a for a, _ in r.equal), *r.left_null)
    ):
        return keys["person_id"].unique().sort()
    found = []
    for rule in parsed:
        left = [c for c, _ in rule.equal]
        right = [c for _, c in rule.equal]
        wanted = _where_null(records, rule.left_null).select(left).drop_nulls().unique()
        wanted = wanted.cast({lc: keys.schema[rc] for lc, rc in rule.equal})
        found.append(
            _where_null(keys, rule.right_null)
            .select("person_id", *right)
            .join(wanted, left_on=right, right_on=left, how="semi")
            .select("person_id")
        )
    return pl.concat(found)["person_id"].unique().sort()


def _where_null(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """The rows of ``frame`` where every column of ``columns`` is null (all without any)."""
    return frame.filter(*(pl.col(c).is_null() for c in columns)) if columns else frame


def term_frequencies(
    keys: pl.DataFrame, columns: tuple[str, ...] = model.TF_COLUMNS
) -> dict[str, pl.DataFrame]:
    """Per column, Splink's term-frequency table over the whole register: ``column`` and
    ``tf_<column>`` = the value's count over the count of non-null values (Splink's own
    formula, :func:`splink.internals.term_frequencies.term_frequencies_for_single_column_sql`)."""
    out = {}
    for column in columns:
        values = keys.select(pl.col(column)).drop_nulls()
        total = max(values.height, 1)
        out[column] = (
            values.group_by(column)
            .agg(pl.len().alias("n"))
            .select(column, (pl.col("n").cast(pl.Float64) / total).alias(f"tf_{column}"))
            .sort(column)
        )
    return out
