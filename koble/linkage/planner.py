"""Turn a validated :class:`~koble.linkage.job.Job` into a :class:`~koble.linkage.plan.Plan`.

Each requested registry gets its route from :func:`koble.linkage.routes.route_for` (catalogue
fields only). The operator always assigns the serial numbers (løpenummer) and keeps the key
list. Then, per registry:

* distributed: operator → registry (fnr, lopenr); the registry extracts (lopenr, variables);
* TTP pseudonym route: operator → TTP (fnr, lopenr); the TTP replaces fnr by the registry's
  pseudonym; TTP → registry (pseudonym, lopenr); the registry extracts (lopenr, variables);
* consent filter: the registry keeps only persons whose consent covers the project first;
* refused: no party is sent anything; the plan says why.

A request's years are first cut at the registry's identity regimes and at a succession
(:meth:`Catalogue.segments <koble.registries.catalogue.Catalogue.segments>`, :mod:`.periods`):
prescriptions 2015–2024 are Reseptregisteret's 2015–2021 (TTP pseudonym route) and
Legemiddelregisteret's 2022–2024 (distributed), both under the job's approval for the
request; NPR 2005–2010 is planned for 2008–2010 and refused for the de-identified
2005–2007. Each planned part is then routed as a registry of its own.

Identity recovery (``[population] recover``, a request's ``recover``; design.md §1.5): the
holder of the records (the operator for the population, the registry for its own) sends every
record, with its name fields, to the TTP only: those without a usable number to be recovered,
and those with a valid one to be checked against birth date and sex (a valid number may be
someone else's); the TTP resolves them against its population register and returns (record,
fnr, method, probability, weight). The operator then gives løpenummer to exact and recovered
persons alike; a registry extracts with the numbers it got back. Names go nowhere else: not
to a registry, not to the researcher.

Extracts go to the researcher, who joins them on lopenr; but if any registry demands
anonymous output, the job takes the central anonymous route: every extract goes to the
operator, which links centrally, runs the anonymity gate and delivers without lopenr.
"""

from __future__ import annotations

from koble.linkage import names
from koble.linkage.formats import SUFFIX
from koble.linkage.job import Job, Request
from koble.linkage.job_model import RECORD_FIELDS
from koble.linkage.periods import plan_periods
from koble.linkage.plan import (
    FNR,
    OPERATOR,
    RESEARCHER,
    SERIAL,
    TTP,
    Party,
    Plan,
    PlanRoute,
    Step,
    Transfer,
    registry_party,
)
from koble.linkage.routes import Route
from koble.registries.catalogue import Catalogue, Registry

__all__ = ["plan_job"]

#: What the TTP returns for each record it was asked to resolve (contract: koble.recovery).
RESOLVED_COLUMNS = (
    "record_id", FNR, "link_method", "match_probability", "match_weight", "reason",
)  # fmt: skip
#: The per-person (or per-record) variables a recovery adds to the researcher's files.
LINK_VARIABLES = ("link_method", "match_probability", "match_weight")
#: The operator's file of how each person was linked (lopenr, link_method, probability).
LINK_METHODS = names.LINK_METHODS


class _Builder:
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.transfers: list[Transfer] = []
        self.reports: list[str] = []

    def step(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def send(self, after: Step, target: str, file: str, columns: tuple[str, ...]) -> None:
        ident = f"t{len(self.transfers) + 1}"
        self.transfers.append(Transfer(ident, after.party, target, file, columns, after.id))


def plan_job(job: Job, catalogue: Catalogue | None = None) -> Plan:
    """The plan for ``job``; registries are looked up in ``catalogue`` (bundled by default)."""
    catalogue = catalogue or Catalogue.load()
    periods = plan_periods(job, catalogue)
    entries, routes = periods.entries, periods.routes
    accepted, refusals = periods.planned, periods.refusals
    central = any(routes[r.registry].anonymous_output for r in accepted)
    uses_ttp = any(routes[r.registry].pseudonymous for r in accepted) or (
        bool(accepted) and job.recovers
    )

    b = _Builder()
    if accepted:
        recovered = _population_recovery(b, job) if job.recovery is not None else ()
        b.step(
            Step(
                "operator-assign-serials",
                OPERATOR,
                "assign_serials",
                f"validate the population in {job.population_file} (column "
                f"{job.id_column!r}), resolve identity changes, "
                + ("take the persons the TTP recovered, " if recovered else "")
                + f"give each person a {SERIAL} "
                f"(1..N in an order only the project key gives); keep the key list ({FNR}, "
                f"{SERIAL}) private; rejected rows go to a rejects file with their reason",
                inputs=(job.population_file, *recovered),
                outputs=(
                    names.KEY_LIST,
                    *((LINK_METHODS,) if recovered else ()),
                    names.POPULATION_REJECTS,
                    names.POPULATION_REPORT,
                ),
            )
        )
        b.reports.append(names.POPULATION_REPORT)
    extracts: list[str] = []
    collector = OPERATOR if central else RESEARCHER
    for request in accepted:
        extracts.append(_registry_steps(b, job, request, routes[request.registry], collector))
    variables = tuple(dict.fromkeys(v for r in accepted for v in r.variables))
    if accepted and central:
        _central_steps(b, job, extracts, variables)
    elif accepted:
        links = [f"linkage.{_suffix(job.delivery_format)}"] if job.recovery is not None else []
        _deliver_steps(b, job, extracts, [], links=links)
    for refusal in refusals:
        b.step(
            Step(
                f"operator-refuse-{refusal.key}",
                OPERATOR,
                "refuse",
                f"refuse {refusal.label}: {refusal.reason}",
                registry=refusal.registry,
            )
        )

    parties: list[Party] = []
    if accepted or refusals:
        parties.append(Party(OPERATOR, "operator", "Linkage operator"))
    if uses_ttp:
        parties.append(Party(TTP, "ttp", "Trusted third party (pseudonym service)"))
    for request in accepted:
        entry = entries[request.registry]
        parties.append(
            Party(
                registry_party(entry.id),
                "registry",
                f"{entry.name} ({entry.owner})",
                pseudonymous=routes[entry.id].pseudonymous,
            )
        )
    if accepted:
        parties.append(Party(RESEARCHER, "researcher", f"{job.recipient}, {job.organisation}"))

    notes = [*periods.notes, *(n for r in accepted for n in routes[r.registry].notes)]
    unsure = [r.registry for r in accepted if entries[r.registry].anonymous_output == "unknown"]
    if unsure and not central:
        notes.append(
            "the catalogue does not say whether output must be anonymous for "
            f"{', '.join(unsure)}; planned as individual-level delivery under the approval"
        )
    notes += [n for r in accepted if (n := _coverage_note(r, entries[r.registry])) is not None]
    if job.anonymity is not None and not central:
        notes.append("no route needs the [anonymity] requirements; they are not applied")
    if job.recovers and central:
        notes.append(
            "identity recovery: link_method and match_probability are not delivered on the "
            "central anonymous route (they would single persons out beside the quasi-"
            "identifiers); the quality report's linkage section gives them in aggregate"
        )
    route: PlanRoute = (
        "refused" if not accepted else "central-anonymous" if central else "distributed"
    )
    return Plan(
        project_id=job.project_id,
        title=job.title,
        route=route,
        parties=tuple(parties),
        steps=tuple(b.steps),
        transfers=tuple(b.transfers),
        refusals=tuple(refusals),
        notes=tuple(notes),
        catalogue_version=catalogue.version,
        parts=periods.parts,
    )


def _registry_steps(b: _Builder, job: Job, request: Request, route: Route, collector: str) -> str:
    """Steps and transfers for one registry; returns the extract's file name."""
    reg = request.registry
    party = registry_party(reg)
    persons = names.persons(reg)
    if route.pseudonymous:
        pseudonym = names.pseudonym_column(reg)
        to_ttp = names.persons_fnr(reg)
        ttp_report = names.ttp_report(reg)
        sent = b.step(
            Step(
                f"operator-send-{reg}",
                OPERATOR,
                "send_population_extract",
                f"send ({FNR}, {SERIAL}) for the population to the TTP for {reg}",
                inputs=(names.KEY_LIST,),
                outputs=(to_ttp,),
                registry=reg,
            )
        )
        b.send(sent, TTP, to_ttp, (FNR, SERIAL))
        converted = b.step(
            Step(
                f"ttp-pseudonymise-{reg}",
                TTP,
                "pseudonymise_for_registry",
                f"replace {FNR} by {reg}'s pseudonym (its own key); the TTP never sees "
                f"{reg}'s variables",
                inputs=(to_ttp,),
                outputs=(persons, ttp_report),
                registry=reg,
            )
        )
        b.send(converted, party, persons, (pseudonym, SERIAL))
        b.send(converted, OPERATOR, ttp_report, ())
        b.reports.append(ttp_report)
        key = pseudonym
    else:
        sent = b.step(
            Step(
                f"operator-send-{reg}",
                OPERATOR,
                "send_population_extract",
                f"send ({FNR}, {SERIAL}) for the population to {reg}",
                inputs=(names.KEY_LIST,),
                outputs=(persons,),
                registry=reg,
            )
        )
        b.send(sent, party, persons, (FNR, SERIAL))
        key = FNR
    source = persons
    recovered: tuple[str, ...] = ()
    if request.recover:
        recovered = (_registry_recovery(b, reg, party),)
    consent: tuple[str, ...] = ()
    if route.consent_filter:
        source = names.consented(reg)
        consent = (names.consent_report(reg),)
        b.step(
            Step(
                f"{reg}-consent-filter",
                party,
                "consent_filter",
                f"keep only persons whose consent covers project {job.project_id}",
                inputs=(persons,),
                outputs=(source, *consent),
                registry=reg,
            )
        )
    suffix = "parquet" if collector == OPERATOR else _suffix(job.delivery_format)
    extract = names.extract(reg, suffix)
    report = names.registry_report(reg)
    done = b.step(
        Step(
            f"{reg}-extract",
            party,
            "extract",
            f"extract {', '.join(request.variables)} for {request.start}–{request.end} by "
            f"{key}; "
            + (
                "withhold what persons opted out of (reservation filter), before anything "
                "leaves the registry; "
                if route.reservation_filter
                else ""
            )
            + f"write ({SERIAL}, variables) (approval: {request.approval.kind} "
            f"{request.approval.reference})",
            inputs=(source, *recovered, *consent),
            outputs=(extract, report),
            registry=reg,
        )
    )
    linked = LINK_VARIABLES if recovered and collector == RESEARCHER else ()
    b.send(done, collector, extract, (SERIAL, *request.variables, *linked))
    b.send(done, OPERATOR, report, ())
    b.reports.append(report)
    return extract


def _resolve(b: _Builder, holder: str, scope: str, records: str, what: str) -> Step:
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


def _population_recovery(b: _Builder, job: Job) -> tuple[str, ...]:
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


def _registry_recovery(b: _Builder, reg: str, party: str) -> str:
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


def _central_steps(b: _Builder, job: Job, extracts: list[str], variables: tuple[str, ...]) -> None:
    anonymity = job.anonymity
    requirement = anonymity.describe() if anonymity is not None else "the requirements (none given)"
    b.step(
        Step(
            "operator-link",
            OPERATOR,
            "link_centrally",
            f"link the {len(extracts)} extract(s) on {SERIAL}",
            inputs=tuple(extracts),
            outputs=(names.LINKED,),
        )
    )
    b.step(
        Step(
            "operator-anonymity-gate",
            OPERATOR,
            "anonymity_gate",
            f"coarsen the linked file until it meets {requirement}; drop {SERIAL}; if it "
            "cannot, stop and return the job to the applicant with the report",
            inputs=(names.LINKED,),
            outputs=(names.ANONYMOUS, names.WITHHELD, names.ANONYMITY_JSON, *names.GATE_REPORT),
        )
    )
    _deliver_steps(
        b, job, [names.delivery(_suffix(job.delivery_format))], [names.ANONYMITY_MD], variables
    )


#: The documents the operator adds to every delivery (design.md §1.5).
DOCUMENTS = names.DOCUMENTS
MANIFEST = names.MANIFEST


def _deliver_steps(
    b: _Builder,
    job: Job,
    files: list[str],
    documents: list[str],
    columns: tuple[str, ...] = (),
    *,
    links: list[str] | None = None,
) -> None:
    """The operator's manifest and reports, and the researcher's checked receipt. ``links``:
    the distributed route's file of how each person was linked (identity recovery), which
    the operator writes from its key list and sends keyed by løpenummer."""
    central = bool(documents)
    links = links or []
    docs = (*DOCUMENTS, *documents, MANIFEST)
    outputs = (*files, *docs) if central else (*links, *docs)
    deliver = b.step(
        Step(
            "operator-deliver",
            OPERATOR,
            "deliver",
            (
                f"write the anonymous file as {job.delivery_format}, "
                if central
                else "from the registries' extract reports (counts and hashes, no person data), "
            )
            + "write the quality report, codebook and manifest; sign the manifest (Ed25519)",
            inputs=(
                *((names.ANONYMOUS, names.ANONYMITY_JSON, names.GATE_REPORT[0]) if central else ()),
                *((LINK_METHODS,) if links else ()),
                *b.reports,
            ),
            outputs=outputs,
        )
    )
    if central:
        for file in files:
            b.send(deliver, RESEARCHER, file, columns)
    for file in links:
        b.send(deliver, RESEARCHER, file, (SERIAL, *LINK_VARIABLES))
    files = [*files, *links]
    for doc in docs:
        b.send(deliver, RESEARCHER, doc, ())
    b.step(
        Step(
            "researcher-receive",
            RESEARCHER,
            "receive",
            f"check the manifest's signature, hashes and row counts for the {len(files)} "
            f"file(s), then keep them as the delivery (the researcher never holds {FNR})",
            inputs=(*files, *docs),
            outputs=("delivery/",),
        )
    )


def _coverage_note(request: Request, entry: Registry) -> str | None:
    """A note when the requested period reaches outside the years the catalogue says the
    registry covers (the extract simply has no rows there; the applicant should know)."""
    start, end = entry.period.start, entry.period.end
    before = isinstance(start, int) and request.start < start
    after = isinstance(end, int) and request.end > end
    if not (before or after):
        return None
    return (
        f"{request.registry}: the requested period {request.start}–{request.end} reaches outside "
        f"the catalogue's coverage {entry.period}; expect no rows there"
    )


def _suffix(fmt: str) -> str:
    return SUFFIX.get(fmt, fmt)
