"""The tables identity recovery works on, named once: records, register, links, rejects.

Every stage takes the records still unresolved and the register, and returns a
:class:`StageResult`: the records it linked, the pairs it leaves to a reviewer, and the
records it rejects with a reason. Stages never drop a record: what a stage neither links,
sends to review nor rejects is passed to the next stage (``remaining``).

Records (the input, after reading and compaction)
    ``record_id`` (string, unique), ``fnr`` (string or null, as written), ``first_name``,
    ``middle_name``, ``last_name`` (strings or null), ``birth_date`` (date or null), ``sex``
    (``"M"``/``"F"`` or null), ``death_date`` (date or null), ``kommune`` (4-digit string or
    null: a place the record names, e.g. residence). A records file may lack any of these
    but ``record_id`` (made from the row number when absent); missing columns are null.

Register (held by the TTP only; a directory, :data:`REGISTER_FILES`)
    persons.parquet: ``person_id`` (current number), ``first_name``, ``middle_name``,
    ``last_name`` (current name), ``birth_date``, ``sex``, ``death_date`` (null for the
    living), ``kommune`` (current or last address), ``birth_kommune`` (null when born
    abroad), ``birth_country`` (null when born in Norway).
    names.parquet: every name a person has had (current included): ``person_id``,
    ``first_name``, ``middle_name``, ``last_name``, ``valid_from``, ``valid_to`` (null: in
    force), ``reason`` (``birth``, ``marriage``, ``change``, ``immigration``).
    addresses.parquet: ``person_id``, ``kommune``, ``valid_from``, ``valid_to``.
    identity_history.parquet (optional): ``old_id``, ``current_id`` (as in a synth world).

Links (what a stage resolves)
    ``record_id``, ``person_id``, ``method`` (:data:`METHODS`), ``match_probability``
    (float in [0, 1]; 1.0 for exact and repaired), ``match_weight`` (float, log2 Bayes
    factor; null for exact and repaired).

Review (pairs between the thresholds)
    ``record_id``, ``person_id``, ``match_probability``, ``match_weight``, and per compared
    field ``gamma_<field>`` (Splink's comparison level, -1 for null).

Rejects
    ``record_id``, ``reason`` (:data:`REASONS`), ``detail`` (text, never a name or number).

Extra comparison fields (optional, declared by the caller)
    A mapping field -> kind (:data:`COMPARE_KINDS`): the records carry a column ``field``
    beyond :data:`RECORD_SCHEMA`, and the register side a frame ``person_id`` + ``field``
    (the :data:`COMPARE_REGISTER_FILE` of a register directory, or a frame in the API).
    Each becomes one more comparison of the probabilistic model (``gamma_x_<field>``).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import polars as pl

__all__ = [
    "ADDRESS_SCHEMA",
    "COMPARE_KINDS",
    "COMPARE_REGISTER_FILE",
    "LINK_SCHEMA",
    "METHODS",
    "NAMES_SCHEMA",
    "REASONS",
    "RECORD_SCHEMA",
    "REGISTER_FILES",
    "REGISTER_SCHEMA",
    "REJECT_SCHEMA",
    "TRAININGS",
    "RegisterLike",
    "StageResult",
    "empty",
]

RECORD_SCHEMA = pl.Schema({
    "record_id": pl.String, "fnr": pl.String, "first_name": pl.String,
    "middle_name": pl.String, "last_name": pl.String, "birth_date": pl.Date,
    "sex": pl.String, "death_date": pl.Date, "kommune": pl.String,
})  # fmt: skip
REGISTER_SCHEMA = pl.Schema({
    "person_id": pl.String, "first_name": pl.String, "middle_name": pl.String,
    "last_name": pl.String, "birth_date": pl.Date, "sex": pl.String, "death_date": pl.Date,
    "kommune": pl.String, "birth_kommune": pl.String, "birth_country": pl.String,
})  # fmt: skip
NAMES_SCHEMA = pl.Schema({
    "person_id": pl.String, "first_name": pl.String, "middle_name": pl.String,
    "last_name": pl.String, "valid_from": pl.Date, "valid_to": pl.Date, "reason": pl.String,
})  # fmt: skip
ADDRESS_SCHEMA = pl.Schema({
    "person_id": pl.String, "kommune": pl.String, "valid_from": pl.Date, "valid_to": pl.Date,
})  # fmt: skip
REGISTER_FILES = {
    "persons": "persons.parquet",
    "names": "names.parquet",
    "addresses": "addresses.parquet",
    "history": "identity_history.parquet",
}
LINK_SCHEMA = pl.Schema({
    "record_id": pl.String, "person_id": pl.String, "method": pl.String,
    "match_probability": pl.Float64, "match_weight": pl.Float64,
})  # fmt: skip
REJECT_SCHEMA = pl.Schema({"record_id": pl.String, "reason": pl.String, "detail": pl.String})
#: how a record was resolved, in the order the stages run
METHODS = ("exact", "repaired", "probabilistic", "clerical")
#: why a record was not resolved
REASONS = (
    "no_candidate",  # nobody in the register came close enough to compare
    "ambiguous",  # several persons equally good (or a repair with several candidates)
    "below_threshold",  # the best candidate's probability is under the lower threshold
    "rejected_in_review",  # a reviewer decided the pair is not a match
    "awaiting_review",  # between the thresholds, no decision read yet
    "conflict",  # exact number but birth date or sex disagree, and no other stage resolved it
)
#: how an extra comparison field is compared: ``text`` (exact with term frequencies, then
#: Jaro-Winkler >= 0.92 and >= 0.8), ``exact`` (exact with term frequencies)
COMPARE_KINDS = ("text", "exact")
#: where a register directory may keep the extra comparison fields (person_id + fields)
COMPARE_REGISTER_FILE = "compare.parquet"
#: how the probabilistic model learned its m-probabilities: ``labels`` (the exact links,
#: with the number's m by EM on the records to resolve), ``em`` (EM only: too few exact links)
TRAININGS = ("labels", "em")


class RegisterLike(Protocol):
    """What the stages read of a register (:class:`koble.recovery.register.Register`, or a
    part of one): its persons, names and addresses tables, of the schemas above."""

    @property
    def persons(self) -> pl.DataFrame: ...
    @property
    def names(self) -> pl.DataFrame: ...
    @property
    def addresses(self) -> pl.DataFrame: ...


def empty(schema: pl.Schema) -> pl.DataFrame:
    """An empty frame of ``schema``."""
    return pl.DataFrame(schema=schema)


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What one stage did with the records it was given.

    ``linked`` has :data:`LINK_SCHEMA`; ``rejected`` :data:`REJECT_SCHEMA`; ``review`` the
    review columns (empty for the deterministic stages); ``remaining`` the records (of
    :data:`RECORD_SCHEMA`) the stage leaves to the next one. Every record given to the stage
    is in exactly one of ``linked``, ``rejected``, ``remaining`` or (by record_id) ``review``.
    """

    linked: pl.DataFrame
    rejected: pl.DataFrame
    remaining: pl.DataFrame
    review: pl.DataFrame
    #: Marks on some of ``remaining`` (:data:`REJECT_SCHEMA`): the reason each would be
    #: rejected with if no later stage resolves it (``conflict``: exact number, disagreeing
    #: birth date or sex; ``ambiguous``: a repair with several candidates). Added for the
    #: deterministic stages; other stages may leave the default (no marks).
    pending: pl.DataFrame = dataclasses.field(default_factory=lambda: empty(REJECT_SCHEMA))
