"""The Fellegi–Sunter model of the probabilistic stage, written as data an auditor can read.

Everything Splink is told is built here from plain dicts and SQL strings (DuckDB dialect):
the comparisons and their levels, the blocking rules, the term-frequency columns. The
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
``birth_date``, ``bd_str`` (``YYYYMMDD``), ``bd_year``, ``bd_month``, ``sex``,
``death_date``, ``places`` (list of kommune numbers: the record's kommune; the person's
address history, current kommune and birth kommune).

Comparison levels are ordered from strongest to weakest; the first that holds is the pair's
gamma (``-1`` for the null level: the field is missing on a side and says nothing).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = [
    "BLOCKING_RULES",
    "COMPARISONS",
    "TF_COLUMNS",
    "ModelReport",
    "parameters",
    "settings",
    "smooth",
]

#: columns whose value frequency adjusts the weight of an exact agreement
TF_COLUMNS = ("fn_key", "ln_key")


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

#: the comparisons, in the order of the gamma columns
COMPARISONS: tuple[dict[str, Any], ...] = (
    _name("fn", "ln"),
    _name("ln", "fn"),
    _MIDDLE,
    _BIRTH,
    _SEX,
    _DEATH,
    _PLACE,
)

#: a pair is compared when any of these holds (each an equi-join: near-linear)
BLOCKING_RULES: tuple[str, ...] = (
    "l.birth_date = r.birth_date",
    "l.ln_ph = r.ln_ph AND l.bd_year = r.bd_year",
    "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph",
    "l.fn_ph = r.ln_ph AND l.ln_ph = r.fn_ph",
    "l.fn_ph = r.fn_ph AND l.bd_year = r.bd_year AND l.bd_month = r.bd_month AND l.sex = r.sex",
)


def settings(probability_two_random_records_match: float) -> dict[str, Any]:
    """The Splink settings dict (link_only, records against register rows)."""
    return {
        "link_type": "link_only",
        "unique_id_column_name": "unique_id",
        "source_dataset_column_name": "source_dataset",
        "probability_two_random_records_match": probability_two_random_records_match,
        "comparisons": [dict(c) for c in COMPARISONS],
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": rule, "sql_dialect": "duckdb"} for rule in BLOCKING_RULES
        ],
        "retain_matching_columns": True,  # Splink 5 keeps gamma_* only with these
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": ["entity_id"],
        "em_convergence": 0.0001,
    }


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["thresholds"] = list(self.thresholds)
        out["parameters"] = [dict(p) for p in self.parameters]
        return out

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, ensure_ascii=False)
