"""The planner's builder, and the steps it adds around a registry's own: the sealed ingest
of a registry whose data arrive as a feed, and identity recovery at the TTP.

:func:`koble.linkage.planner.plan_job` builds a plan with a :class:`PlanBuilder`; the
functions here add the steps (and transfers) of one concern each, named by
:mod:`koble.linkage.names`. Design.md §1.4 (sealed ingest) and §1.5 (records without a
usable fødselsnummer).
"""

from __future__ import annotations

from koble.linkage import names
from koble.linkage.job import Job
from koble.linkage.job_model import RECORD_FIELDS
from koble.linkage.plan import FNR, OPERATOR, TTP, Step, Transfer, registry_party

__all__ = [
    "RESOLVED_COLUMNS",
    "PlanBuilder",
    "plan_ingest",
    "plan_population_recovery",
    "plan_registry_recovery",
]

#: What the TTP returns for each record it was asked to resolve (contract: koble.recovery).
RESOLVED_COLUMNS = (
    "record_id", FNR, "link_method", "match_probability", "match_weight", "reason",
)  # fmt: skip


class PlanBuilder:
    """The steps, transfers and reports of a plan as it is built, in order."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.transfers: list[Transfer] = []
        self.reports: list[str] = []
        #: A registry loaded from a sealed feed: the table and counts its ingest step wrote.
        self.loaded: dict[str, tuple[str, ...]] = {}

    def step(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def send(self, after: Step, target: str, file: str, columns: tuple[str, ...]) -> None:
        ident = f"t{len(self.transfers) + 1}"
        self.transfers.append(Transfer(ident, after.party, target, file, columns, after.id))


def plan_ingest(b: PlanBuilder, reg: str, feed: str) -> None:
    """A registry whose data arrive as a sealed feed (design.md §1.4) loads it: the TTP
    pseudonymises the identifiers inside the same step, without reading the payload, and
    keeps nothing; the registry keeps the table and the ingest's counts."""
    outputs = (names.ingested(reg), names.ingest_counts(reg))
    b.step(
        Step(
            f"ingest-{reg}",
            registry_party(reg),
            "sealed_ingest",
            f"load the feed {feed} by sealed ingest: the sender has sealed {FNR} (and any "
            f"other identifier) to the TTP and the payload to {reg}; the TTP replaces the "
            f"identifiers by {reg}'s pseudonyms without reading the payload; {reg} keeps the "
            "rows keyed by its pseudonym and counts the rows sent, stored and rejected (the "
            "rejects go back to the sender); a table loaded before is kept",
            inputs=(feed,),
            outputs=outputs,
            registry=reg,
        )
    )
    b.loaded[reg] = outputs


def _resolve(b: PlanBuilder, holder: str, scope: str, records: str, what: str) -> Step:
    """The TTP's resolve step for ``records`` sent by ``holder`` (``scope``: population or a
    registry id); the resolved file goes back to the holder, the counts to the operator."""
    resolved = names.resolved(scope)
    report = names.resolve_report(scope)
    step = b.step(
        Step(
            f"ttp-resolve-{scope}",
            TTP,
            "resolve_identities",
            f"resolve {what} against the population register: exact, repaired number, "
            "probabilistic (Splink, trained on the exactly linked records), review; return "
            f"(record, {FNR}, link_method, match_probability, match_weight) or the reason "
            "(a valid number whose birth date or sex disagree is not an exact link); the names, "
            "the model and the review pairs stay at the TTP",
            inputs=(records,),
            outputs=(resolved, report, names.resolve_model(scope), names.resolve_review(scope)),
            registry=None if scope == "population" else scope,
        )
    )
    b.send(step, holder, resolved, RESOLVED_COLUMNS)
    b.send(step, OPERATOR, report, ())
    b.reports.append(report)
    return step


def _record_columns(fields: tuple[str, ...]) -> tuple[str, ...]:
    return ("record_id", FNR, *fields)


def plan_population_recovery(b: PlanBuilder, job: Job) -> tuple[str, ...]:
    """The operator's rows go with their name fields to the TTP (those without a usable
    number to be recovered, the valid ones to be checked); returns the files assign-serials
    reads back."""
    assert job.recovery is not None
    records = names.POPULATION_RECOVER
    fields = tuple(f for f in RECORD_FIELDS if f in job.recovery.fields)
    sent = b.step(
        Step(
            "operator-prepare-recovery",
            OPERATOR,
            "prepare_recovery",
            f"validate {job.id_column!r}; every row, with {', '.join(fields)}, goes to the "
            "TTP only: those whose number is missing or invalid to be recovered, those whose "
            "number is valid to be checked against birth date and sex (and to train the "
            "model on); the TTP's answer decides for every row",
            inputs=(job.population_file,),
            outputs=(records,),
        )
    )
    b.send(sent, TTP, records, _record_columns(fields))
    _resolve(b, OPERATOR, "population", records, "the population's rows")
    return (names.resolved("population"), names.resolve_report("population"))


def plan_registry_recovery(b: PlanBuilder, reg: str, party: str) -> str:
    """A registry's records without a usable number go (with names) to the TTP and come back
    resolved; the registry fills the numbers in. Returns the table it extracts from."""
    records = names.recover(reg)
    sent = b.step(
        Step(
            f"{reg}-prepare-recovery",
            party,
            "prepare_recovery",
            f"every record, with its name, birth date, sex and death date, goes to the TTP "
            f"only: those whose {FNR} is missing or invalid to be recovered, those whose "
            f"{FNR} is valid to be checked against birth date and sex",
            outputs=(records,),
            registry=reg,
        )
    )
    b.send(sent, TTP, records, _record_columns(RECORD_FIELDS))
    _resolve(b, party, reg, records, f"{reg}'s records")
    table = names.recovered(reg)
    b.step(
        Step(
            f"{reg}-apply-recovery",
            party,
            "apply_recovery",
            f"fill in the {FNR} the TTP resolved for every record, with its link_method, "
            "match_probability and match_weight; records still unresolved keep no number and "
            "are not extracted",
            inputs=(names.resolved(reg),),
            outputs=(table,),
            registry=reg,
        )
    )
    return table
