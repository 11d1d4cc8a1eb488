"""The Fellegi–Sunter model of the probabilistic stage, written as data an auditor can read.

Everything Splink is told is built here from plain dicts and SQL strings (DuckDB dialect;
for Splink on Spark the same conditions rewritten in Spark SQL by :func:`in_spark`): the
comparisons and their levels, the blocking rules, the term-frequency columns. The
trained model (m and u per level, λ) is read back from Splink into the same shape and
written with the result, so a run can be reproduced bit for bit.

The compared columns are made by :func:`koble.recovery.probabilistic.prepare` from the
records and the register (one row per person and name they have had):

``fn_key``/``mn_key``/``ln_key``
    :func:`~koble.recovery.normalise.name_key` of first, middle and last name;
``fn_tok``/``ln_tok``
    :func:`~koble.recovery.normalise.name_tokens` (double and hyphenated names);
``fn_ph``/``ln_ph``
    :func:`~koble.recovery.normalise.phonetic_key` (also blocking keys);
``birth_date``, ``bd_str`` (``YYYYMMDD``), ``bd_year``, ``bd_month`` and the blocking keys
``bd_day``, ``bd_decade``, ``bd_day_tens``, ``bd_day_units``
(:func:`~koble.recovery.candidates.birth_parts`), ``sex``, ``rare_ph`` (first and last name
sound; on the register side only where rare: :func:`~koble.recovery.candidates.key_rows`),
``death_date``, ``places`` (list of kommune numbers: the record's kommune; the person's
address history, current kommune and birth kommune); ``nr`` (the record's number as
written, compacted; the person's own number); ``x_<field>`` for each extra field the caller
declared (:func:`comparisons`).

Comparison levels are ordered from strongest to weakest; the first that holds is the pair's
gamma (``-1`` for the null level: the field is missing on a side and says nothing).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from koble.errors import UsageError
from koble.recovery.contract import COMPARE_KINDS, TRAININGS

__all__ = [
    "BLOCKING_RULES",
    "COMPARISONS",
    "DIALECTS",
    "TF_COLUMNS",
    "TRAININGS",
    "ModelReport",
    "as_written",
    "blocking_rules",
    "comparisons",
    "extra_column",
    "extra_comparison",
    "in_spark",
    "parameters",
    "rounded",
    "settings",
    "smooth",
    "take_m",
]

#: columns whose value frequency adjusts the weight of an exact agreement
TF_COLUMNS = ("fn_key", "ln_key")
#: the SQL dialects the comparisons are written in (Splink's names)
DIALECTS = ("duckdb", "spark")


def _level(sql: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, **extra}


def _null(*cols: str) -> dict[str, Any]:
    sql = " OR ".join(f'"{c}_l" IS NULL OR "{c}_r" IS NULL' for c in cols)
    return _level(sql, "null", is_null_level=True)


_ELSE = _level("ELSE", "else")


def _name(field: str, other: str) -> dict[str, Any]:
    """First or last name: exact key (TF-adjusted), swapped with the other name, sounds
    alike, Jaro-Winkler ≥ 0.92, shares a part (double/hyphenated names), Jaro-Winkler ≥ 0.8."""
    key, ph, tok = f"{field}_key", f"{field}_ph", f"{field}_tok"
    okey = f"{other}_key"
    return {
        "output_column_name": field,
        "comparison_description": f"{field} name on Norwegian-normalised keys",
        "comparison_levels": [
            _null(key),
            _level(f'"{key}_l" = "{key}_r"', "exact key", tf_adjustment_column=key),
            _level(f'"{key}_l" = "{okey}_r" AND "{okey}_l" = "{key}_r"', "first and last swapped"),
            _level(f'"{ph}_l" = "{ph}_r"', "phonetic key"),
            _level(f'jaro_winkler_similarity("{key}_l", "{key}_r") >= 0.92', "jaro-winkler>=0.92"),
            _level(f'len(list_intersect("{tok}_l", "{tok}_r")) >= 1', "shares a name part"),
            _level(f'jaro_winkler_similarity("{key}_l", "{key}_r") >= 0.8', "jaro-winkler>=0.8"),
            _ELSE,
        ],
    }


_MIDDLE = {
    "output_column_name": "mn",
    "comparison_description": "middle name key (missing middle name says nothing)",
    "comparison_levels": [
        _null("mn_key"),
        _level('"mn_key_l" = "mn_key_r"', "exact key"),
        _level('jaro_winkler_similarity("mn_key_l", "mn_key_r") >= 0.88', "jaro-winkler>=0.88"),
        _ELSE,
    ],
}
_BIRTH = {
    "output_column_name": "bd",
    "comparison_description": "birth date: exact, day/month swapped, one digit off, same year",
    "comparison_levels": [
        _null("birth_date"),
        _level('"birth_date_l" = "birth_date_r"', "exact"),
        _level(
            'year("birth_date_l") = year("birth_date_r") AND '
            'month("birth_date_l") = day("birth_date_r") AND '
            'day("birth_date_l") = month("birth_date_r")',
            "day and month swapped",
        ),
        _level('hamming("bd_str_l", "bd_str_r") = 1', "one digit off"),
        _level('"bd_year_l" = "bd_year_r"', "same year"),
        _ELSE,
    ],
}
_SEX = {
    "output_column_name": "sex",
    "comparison_description": "sex",
    "comparison_levels": [_null("sex"), _level('"sex_l" = "sex_r"', "exact"), _ELSE],
}
_DEATH = {
    "output_column_name": "dd",
    "comparison_description": "death date: exact, within 7 days, known on one side only",
    "comparison_levels": [
        _level('"death_date_l" IS NULL AND "death_date_r" IS NULL', "null", is_null_level=True),
        _level('"death_date_l" = "death_date_r"', "exact"),
        _level('abs(date_diff(\'day\', "death_date_l", "death_date_r")) <= 7', "within 7 days"),
        _level('"death_date_l" IS NULL OR "death_date_r" IS NULL', "known on one side only"),
        _ELSE,
    ],
}
_PLACE = {
    "output_column_name": "place",
    "comparison_description": "the record's kommune among the person's kommuner",
    "comparison_levels": [
        _level(
            '"places_l" IS NULL OR "places_r" IS NULL OR len("places_l") = 0 '
            'OR len("places_r") = 0',
            "null",
            is_null_level=True,
        ),
        _level('len(list_intersect("places_l", "places_r")) >= 1', "shares a kommune"),
        _ELSE,
    ],
}

_NUMBER = {
    "output_column_name": "nr",
    "comparison_description": "the record's number against the person's: exact, one "
    "substitution or adjacent transposition (the repair stage's notion), other",
    "comparison_levels": [
        _null("nr"),
        _level('"nr_l" = "nr_r"', "exact"),
        _level(
            'length("nr_l") = length("nr_r") AND damerau_levenshtein("nr_l", "nr_r") = 1',
            "one substitution or adjacent transposition",
        ),
        _ELSE,
    ],
}

#: the comparisons, in the order of the gamma columns
COMPARISONS: tuple[dict[str, Any], ...] = (
    _name("fn", "ln"),
    _name("ln", "fn"),
    _MIDDLE,
    _BIRTH,
    _SEX,
    _DEATH,
    _PLACE,
    _NUMBER,
)

#: how an extra comparison field (:data:`koble.recovery.contract.COMPARE_KINDS`) is compared
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def extra_column(field: str) -> str:
    """The compared column of the caller's extra field ``field`` (``x_<field>``)."""
    return f"x_{field}"


def extra_comparison(field: str, kind: str) -> dict[str, Any]:
    """The comparison of a caller-declared extra field (address, street number, ...).

    ``text``: exact (term-frequency adjusted), Jaro-Winkler >= 0.92, >= 0.8, else;
    ``exact``: exact (term-frequency adjusted), else. Values are compared lowercased and
    trimmed (see :func:`koble.recovery.probabilistic.prepare_records`)."""
    if not _FIELD_NAME.match(field):
        raise UsageError(
            "an extra comparison field must be lowercase letters, digits and _ "
            "(starting with a letter)"
        )
    if kind not in COMPARE_KINDS:
        raise UsageError(f"a comparison kind must be one of {', '.join(COMPARE_KINDS)}")
    col = extra_column(field)
    levels = [_null(col), _level(f'"{col}_l" = "{col}_r"', "exact", tf_adjustment_column=col)]
    if kind == "text":
        jw = f'jaro_winkler_similarity("{col}_l", "{col}_r")'
        levels += [_level(f"{jw} >= 0.92", "jaro-winkler>=0.92"),
                   _level(f"{jw} >= 0.8", "jaro-winkler>=0.8")]  # fmt: skip
    return {
        "output_column_name": col,
        "comparison_description": f"extra field {field} ({kind})",
        "comparison_levels": [*levels, _ELSE],
    }


def comparisons(
    compare: Mapping[str, str] | None = None, dialect: str = "duckdb"
) -> tuple[dict[str, Any], ...]:
    """:data:`COMPARISONS` followed by one comparison per extra field of ``compare``
    (field -> kind), in the mapping's order; in Spark SQL when ``dialect`` is ``spark``
    (:func:`in_spark`)."""
    extra = tuple(extra_comparison(f, k) for f, k in (compare or {}).items())
    if dialect not in DIALECTS:
        raise UsageError(f"the comparisons are written for {' or '.join(DIALECTS)}")
    both = (*COMPARISONS, *extra)
    return tuple(in_spark(c) for c in both) if dialect == "spark" else both


#: DuckDB SQL of the comparisons -> the Spark SQL that computes the same for their columns:
#: identifiers in backticks; DuckDB's own Jaro-Winkler and Damerau-Levenshtein (run in Spark's
#: Python workers: :data:`koble.recovery.backends.SPARK_FUNCTIONS`); one birth date digit off
#: as Levenshtein 1 between strings of the same length (a single substitution: Hamming 1;
#: ``bd_str`` is always ``YYYYMMDD``); ``date_diff('day', a, b)`` as ``datediff(a, b)``
#: (its sign is the other way, under ``abs``); list length and intersection by Spark's names.
_SPARK_SQL: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'"([a-z][a-z0-9_]*)"'), r"`\1`"),
    (re.compile(r"\bhamming\((`\w+`), (`\w+`)\) = 1"),
     r"length(\1) = length(\2) AND levenshtein(\1, \2) = 1"),
    (re.compile(r"\bdate_diff\('day', (`\w+`), (`\w+`)\)"), r"datediff(\1, \2)"),
    (re.compile(r"\blen\(list_intersect\("), "size(array_intersect("),
    (re.compile(r"\blen\("), "size("),
    (re.compile(r"\bjaro_winkler_similarity\("), "koble_jaro_winkler("),
    (re.compile(r"\bdamerau_levenshtein\("), "koble_damerau_levenshtein("),
)  # fmt: skip


def as_written(trained: dict[str, Any], compare: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``trained`` (Splink's JSON of a model trained on any engine, with the comparisons of
    ``compare``) as koble records a model: every condition as written here, in DuckDB SQL,
    and DuckDB as its dialect. On Spark the conditions ran as :func:`in_spark` rewrote
    them; the record (and its hash, which a delivery's quality report carries) does not
    depend on the engine, which the manifest names."""
    out = copy.deepcopy(trained)
    for mine, written in zip(out["comparisons"], comparisons(compare), strict=True):
        levels = zip(mine["comparison_levels"], written["comparison_levels"], strict=True)
        for level, as_given in levels:
            level["sql_condition"] = as_given["sql_condition"]
    for rule in out.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict) and "sql_dialect" in rule:
            rule["sql_dialect"] = "duckdb"
    if "sql_dialect" in out:
        out["sql_dialect"] = "duckdb"
    return out


def in_spark(comparison: dict[str, Any]) -> dict[str, Any]:
    """``comparison`` (DuckDB SQL) with each level's condition in Spark SQL (:data:`_SPARK_SQL`);
    labels, null levels and term-frequency columns as they are."""
    out = copy.deepcopy(comparison)
    for level in out["comparison_levels"]:
        sql = level["sql_condition"]
        for pattern, replacement in _SPARK_SQL:
            sql = pattern.sub(replacement, sql)
        level["sql_condition"] = sql
    return out


#: a pair is compared when any of these holds: each an equi-join, some with a one-sided
#: ``IS NULL`` filter (near-linear). Together they reach a true pair that agrees on two of
#: first name, last name and birth date, allowing one digit off in the date, and a pair
#: whose names both differ but whose birth date and sex agree. Wide keys (any birth year,
#: any sex) are kept only where a side lacks the narrower one: at national scale a common
#: name or birth date alone pairs a record with hundreds of persons.
BLOCKING_RULES: tuple[str, ...] = (
    # same birth date and sex, whatever the names (sex unknown on a side: birth date alone)
    "l.birth_date = r.birth_date AND l.sex = r.sex",
    "l.birth_date = r.birth_date AND l.sex IS NULL",
    "l.birth_date = r.birth_date AND r.sex IS NULL",
    "l.ln_ph = r.ln_ph AND l.bd_year = r.bd_year",
    # both names sound alike: the year one digit off (same day and month) or within the
    # decade; any birth date when a side has none
    "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph AND l.bd_month = r.bd_month AND l.bd_day = r.bd_day",
    "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph AND l.bd_decade = r.bd_decade",
    "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph AND l.birth_date IS NULL",
    "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph AND r.birth_date IS NULL",
    # ... and any birth date where the name is rare in the register (a date written wrongly
    # throughout: a common name alone could not single the person out anyway)
    "l.rare_ph = r.rare_ph",
    "l.fn_ph = r.ln_ph AND l.ln_ph = r.fn_ph",
    # first name and sex with the day one digit off (another last name: a maiden name)
    "l.fn_ph = r.fn_ph AND l.sex = r.sex AND l.bd_year = r.bd_year AND l.bd_month = r.bd_month "
    "AND l.bd_day_tens = r.bd_day_tens",
    "l.fn_ph = r.fn_ph AND l.sex = r.sex AND l.bd_year = r.bd_year AND l.bd_month = r.bd_month "
    "AND l.bd_day_units = r.bd_day_units",
    "l.nr = r.nr",  # a number that names the person but disagrees in birth date or sex
)


def settings(
    probability_two_random_records_match: float,
    compare: Mapping[str, str] | None = None,
    block: Sequence[str] = (),
    dialect: str = "duckdb",
) -> dict[str, Any]:
    """The Splink settings dict (link_only, records against register rows); ``compare``:
    the caller's extra fields (field -> kind), compared after :data:`COMPARISONS`;
    ``block``: extra fields (of ``compare``) whose equality also pairs a record and a row
    (:func:`blocking_rules`); ``dialect``: the SQL of the engine Splink runs on
    (``duckdb`` or ``spark``; the same comparisons, :func:`comparisons`)."""
    return {
        "link_type": "link_only",
        "unique_id_column_name": "unique_id",
        "source_dataset_column_name": "source_dataset",
        "probability_two_random_records_match": probability_two_random_records_match,
        "comparisons": [copy.deepcopy(c) for c in comparisons(compare, dialect)],
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": rule, "sql_dialect": dialect}
            for rule in blocking_rules(compare, block)
        ],
        "retain_matching_columns": True,  # Splink 5 keeps gamma_* only with these
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": ["entity_id"],
        "em_convergence": 0.0001,
    }


def blocking_rules(
    compare: Mapping[str, str] | None = None, block: Sequence[str] = ()
) -> tuple[str, ...]:
    """:data:`BLOCKING_RULES` plus one equi-join per extra field of ``block`` (each must be
    a field of ``compare``: the caller knows which of its fields are selective enough)."""
    unknown = [f for f in block if f not in (compare or {})]
    if unknown:
        raise UsageError("a blocking field must be one of the extra comparison fields")
    extra = tuple(f"l.{extra_column(f)} = r.{extra_column(f)}" for f in block)
    return (*BLOCKING_RULES, *extra)


def smooth(trained: dict[str, Any], n_m: int, n_u: float) -> dict[str, Any]:
    """Add half a pair to every non-null level's m and u counts (Jeffreys smoothing) and
    renormalise: a level no labelled pair (or no random pair) fell in gets a small, finite
    probability instead of zero or Splink's placeholder, so it weighs without forbidding."""
    for comp in trained["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        for key, n in (("m_probability", float(n_m)), ("u_probability", n_u)):
            counts = [lv[key] * n if isinstance(lv.get(key), int | float) else 0.0 for lv in levels]
            total = sum(counts) + 0.5 * len(levels)
            for lv, count in zip(levels, counts, strict=True):
                lv[key] = (count + 0.5) / total
    return trained


def take_m(trained: dict[str, Any], source: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """``trained`` with the m-probabilities of the comparisons ``names`` copied from
    ``source`` (another model of the same comparisons, e.g. one trained by EM)."""
    found = {c["output_column_name"]: c for c in source["comparisons"]}
    for comp in trained["comparisons"]:
        if comp["output_column_name"] not in names:
            continue
        theirs = found[comp["output_column_name"]]["comparison_levels"]
        for mine, other in zip(comp["comparison_levels"], theirs, strict=True):
            if not mine.get("is_null_level"):
                mine["m_probability"] = other.get("m_probability")
    return trained


def rounded(trained: dict[str, Any], digits: int = 12) -> dict[str, Any]:
    """m and u rounded to ``digits`` significant digits: EM and sampling sum floats in an
    order the database may vary between threads; rounding keeps a run's model bit for bit."""
    for comp in trained["comparisons"]:
        for level in comp["comparison_levels"]:
            for key in ("m_probability", "u_probability"):
                value = level.get(key)
                if isinstance(value, float) and value > 0:
                    level[key] = float(f"{value:.{digits}g}")
    return trained


def parameters(trained: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """m, u and Bayes factor per level (gamma as Splink numbers it; -1 for null)."""
    rows = []
    for comp in trained["comparisons"]:
        gamma = -1
        levels = comp["comparison_levels"]
        n_non_null = sum(1 for lv in levels if not lv.get("is_null_level"))
        for level in levels:
            if level.get("is_null_level"):
                g = -1
            else:
                gamma += 1
                g = n_non_null - 1 - gamma
            m, u = level.get("m_probability"), level.get("u_probability")
            bf = m / u if isinstance(m, float) and isinstance(u, float) and u > 0 else None
            rows.append({
                "comparison": comp["output_column_name"], "gamma": g,
                "label": level.get("label_for_charts"), "m": m, "u": u, "bayes_factor": bf,
                "tf_adjustment_column": level.get("tf_adjustment_column"),
            })  # fmt: skip
    return tuple(rows)


@dataclasses.dataclass(frozen=True)
class ModelReport:
    """The trained model and how it was used: enough to reproduce the run bit for bit.

    ``model`` is Splink's own JSON of the trained model (comparisons with their SQL, m and u
    per level, blocking rules, λ); ``parameters`` the same m and u flattened, one row per
    level with its Bayes factor. ``estimated_precision``/``estimated_recall`` are the model's
    own expectation at the thresholds: the sum of the linked pairs' probabilities over the
    number linked, and over the expected number of true matches among all scored candidates.
    """

    model: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]
    probability_two_random_records_match: float
    thresholds: tuple[float, float]
    margin: float
    seed: int
    u_max_pairs: float
    n_training_pairs: int
    n_records: int
    n_comparisons: int
    estimated_precision: float | None
    estimated_recall: float | None
    splink_version: str
    #: how m was learned (:data:`~koble.recovery.contract.TRAININGS`): ``labels`` (the
    #: exact links; the number's m by EM) or ``em`` (too few exact links: EM only)
    training: str = "labels"
    #: the caller's extra comparison fields, (field, kind) in order
    compare: tuple[tuple[str, str], ...] = ()
    #: the extra fields that are also blocking keys
    block: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["thresholds"] = list(self.thresholds)
        out["parameters"] = [dict(p) for p in self.parameters]
        out["compare"] = [list(c) for c in self.compare]
        return out

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, ensure_ascii=False)
