"""How the probabilistic stage learns its m- and u-probabilities (Fellegi–Sunter, in Splink).

Two ways, chosen by how many labelled pairs there are (the ``training`` of a
:class:`~koble.recovery.model.ModelReport`, :data:`~koble.recovery.contract.TRAININGS`):

``labels`` (at least ``min_labels`` exactly linked records: koble's advantage)
    m is counted from the records the exact stage linked, each paired with its person
    (``estimate_m_from_pairwise_labels``). Those pairs were *selected* by their number
    agreeing, so they say nothing about how often a true match's number is damaged or
    missing: the number's m alone is learned by EM on the records to resolve, blocked on
    the sound of first and last name, with u fixed. Not on birth date: the records left to
    this stage with their exact number are those whose birth date disagrees (conflicts),
    and a birth-date block would hide them. Should EM find no pair, the number keeps
    :data:`NUMBER_PRIOR_M`.
``em`` (fewer labels, e.g. a file without any usable number)
    Splink's expectation maximisation on the records to resolve against the register, in
    two passes whose blocking rules fix different fields (:data:`EM_BLOCKING`: birth date,
    then first and last name sound), so every comparison is estimated in one of them.

u comes from random pairs in both (``estimate_u_using_random_sampling`` with the caller's
seed). EM runs on at most ``em_max_records`` records, drawn with the seed, so the cost stays
bounded; m and u are smoothed (:func:`koble.recovery.model.smooth`) and rounded
(:func:`koble.recovery.model.rounded`), so the same input and seed give the same model bit
for bit. Splink's logging is silenced by the caller.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import polars as pl

from koble.recovery import model

if TYPE_CHECKING:
    from koble.recovery.backends import Backend

__all__ = [
    "EM_BLOCKING", "MIN_LABELS", "NUMBER_EM_BLOCKING", "NUMBER_PRIOR_M", "bounded", "train",
]  # fmt: skip

#: labelled pairs needed to learn m from the exact links rather than by EM
MIN_LABELS = 100
#: the EM passes without labels: each fixes the fields its rule joins on
EM_BLOCKING = ("l.birth_date = r.birth_date", "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph")
#: the EM pass that learns the number's m next to labels (does not fix the number)
NUMBER_EM_BLOCKING = "l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph"
#: the comparisons whose m the labels cannot teach (the exact stage selected its links on
#: number, birth date and sex agreeing), learned by EM next to the labels
EM_FIELDS = {"nr", "bd", "sex"}
#: the number's m (exact, one substitution or transposition, other) when EM finds no pair
NUMBER_PRIOR_M = (0.90, 0.07, 0.03)


def train(
    backend: Backend,
    settings: dict[str, Any],
    *,
    tables: dict[str, str],
    n_labels: int,
    n_records: int,
    n_u: float,
    seed: int,
    u_max_pairs: float,
    min_labels: int = MIN_LABELS,
) -> tuple[dict[str, Any], str]:
    """The trained model (Splink's JSON) and how it was trained (``labels`` or ``em``).

    ``tables`` names the tables of ``backend`` (:mod:`koble.recovery.backends`):
    ``training`` (prepared records of the exact links), ``labels`` (their pairs),
    ``records`` (the prepared records to resolve, at most the EM sample), ``register``
    (prepared register rows: at least the labelled persons' and those the EM blocking pairs
    with ``records``) and optionally ``u_register`` (the rows u is counted on; ``register``
    without it). ``n_records``: rows of ``records``; ``n_u``: random pairs u was counted on
    (for smoothing)."""
    api = backend.api()
    if n_labels >= min_labels:
        with_u = _u_from_random_pairs(backend, settings, tables, "training", seed, u_max_pairs)
        linker = _linker(api, tables, "training", with_u)
        linker.training.estimate_m_from_pairwise_labels(  # type: ignore[no-untyped-call]
            api.register(tables["labels"], table_name="labels")
        )
        trained = model.smooth(linker.misc.save_model_to_json(), n_labels, n_u)
        trained = _number_by_em(backend, trained, tables, n_records)
        return model.rounded(bounded(trained)), "labels"
    with_u = _u_from_random_pairs(backend, settings, tables, "records", seed, u_max_pairs)
    linker = _linker(api, tables, "records", with_u)
    for rule in EM_BLOCKING:
        before = linker.misc.save_model_to_json()
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        except ValueError:
            # Splink 5 refuses an m that underflowed to 0 (a level only non-matches fall
            # in) and leaves its settings half changed: this pass teaches nothing, and the
            # model goes on from where it was before it
            before.pop("linker_uid", None)
            linker = _linker(backend.api(), tables, "records", before)
    trained = model.smooth(linker.misc.save_model_to_json(), max(n_records, 1), n_u)
    return model.rounded(bounded(trained)), "em"


def bounded(trained: dict[str, Any]) -> dict[str, Any]:
    """``trained`` with every comparison's Bayes factors made to fall with its levels: a
    level never weighs more for a match than a level above it (levels run from full
    agreement down to the last, "else"), and the last never weighs for a match at all
    (Bayes factor at most 1). A level the training saw too rarely can otherwise get a
    tiny u beside a smoothed m and so a large positive weight: two different death dates
    counting as evidence of one person. m is lowered to ``factor * u`` where capped, and
    the m taken off goes to the first level (full agreement), so m still sums to one and
    no cap is undone."""
    for comp in trained["comparisons"]:
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        before = sum(lv["m_probability"] for lv in levels
                     if isinstance(lv.get("m_probability"), int | float))  # fmt: skip
        ceiling = float("inf")
        for i, level in enumerate(levels):
            m, u = level.get("m_probability"), level.get("u_probability")
            if not (isinstance(m, int | float) and isinstance(u, int | float) and u > 0):
                continue
            cap = min(ceiling, 1.0) if i == len(levels) - 1 else ceiling
            if m / u > cap:
                level["m_probability"] = cap * u
            ceiling = min(ceiling, level["m_probability"] / u)
        after = sum(lv["m_probability"] for lv in levels
                    if isinstance(lv.get("m_probability"), int | float))  # fmt: skip
        if len(levels) > 1 and after < before and isinstance(levels[0].get("m_probability"),
                                                               int | float):  # fmt: skip
            levels[0]["m_probability"] += before - after
    return trained


def _linker(api: Any, tables: dict[str, str], left: str, settings: dict[str, Any]) -> Any:
    """A Splink linker of ``tables[left]`` (as its records) against the register rows."""
    from splink import Linker

    return Linker(
        [api.register(tables[left], table_name="records"),
         api.register(tables["register"], table_name="register")],
        settings, log_level=None,
    )  # fmt: skip


def _u_from_random_pairs(
    backend: Backend, settings: dict[str, Any], tables: dict[str, str],
    left: str, seed: int, u_max_pairs: float,
) -> dict[str, Any]:  # fmt: skip
    """``settings`` with u counted on random pairs of ``tables[left]`` and the register
    rows of ``tables["u_register"]`` (a random sample of the whole register's persons, so u
    is the population's, not the candidates'), or of ``tables["register"]`` without one;
    the pairs DuckDB's Splink draws, on either engine (:meth:`Backend.u_tables`)."""
    from splink import Linker

    api = backend.api()
    records, register, max_pairs = backend.u_tables(
        tables[left], tables.get("u_register", tables["register"]), u_max_pairs, seed
    )
    linker = Linker(
        [api.register(records, table_name="records"),
         api.register(register, table_name="register")],
        copy.deepcopy(settings), log_level=None,
    )  # fmt: skip
    linker.training.estimate_u_using_random_sampling(
        max_pairs=max_pairs, seed=seed, min_count_per_level=None, num_chunks=1
    )
    return linker.misc.save_model_to_json()


def _number_by_em(
    backend: Backend, trained: dict[str, Any], tables: dict[str, str],
    n_records: int,
) -> dict[str, Any]:  # fmt: skip
    """``trained`` with the number's m learned by EM on the records to resolve (see the
    module docstring), or :data:`NUMBER_PRIOR_M` when those give EM nothing to learn from."""
    from splink import Linker
    from splink.internals.exceptions import SplinkException

    em: dict[str, Any] | None = None
    if n_records and _has_numbered_pairs(backend, tables):
        api = backend.api()
        start = copy.deepcopy(trained)  # u kept; m from Splink's neutral start: EM from
        for comp in start["comparisons"]:  # the labelled m can underflow a level's m to 0
            for level in comp["comparison_levels"]:
                level.pop("m_probability", None)
        linker = Linker(
            [api.register(tables["records"], table_name="records"),
             api.register(tables["register"], table_name="register")],
            start, log_level=None,
        )  # fmt: skip
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(NUMBER_EM_BLOCKING)
            em = model.smooth(linker.misc.save_model_to_json(), n_records, 1.0)
        except (SplinkException, ValueError):  # ValueError: an m underflowed (Splink 5)
            em = None
    if em is None:
        em = copy.deepcopy(trained)
        for comp in em["comparisons"]:
            if comp["output_column_name"] == "nr":
                levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
                for level, m in zip(levels, NUMBER_PRIOR_M, strict=True):
                    level["m_probability"] = m
    return model.take_m(trained, em, EM_FIELDS)


def _has_numbered_pairs(backend: Backend, tables: dict[str, str]) -> bool:
    """Whether some record with a number shares first and last name sound with a register
    row (:data:`NUMBER_EM_BLOCKING`)."""
    sql = f"""
        SELECT count(*) FROM (SELECT fn_ph, ln_ph FROM {tables["records"]}
                              WHERE nr IS NOT NULL LIMIT 100000) l
        JOIN {tables["register"]} r ON l.fn_ph = r.fn_ph AND l.ln_ph = r.ln_ph
    """
    return backend.scalar(sql) >= 1


def em_sample(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """At most ``n`` rows of ``frame``, drawn with ``seed`` (all of them if fewer)."""
    if frame.height <= n:
        return frame
    return frame.sample(n, seed=seed, shuffle=False)
