"""Turn a validated :class:`~koble.linkage.job.Job` into a :class:`~koble.linkage.plan.Plan`.

Each requested registry gets its route from :func:`koble.linkage.routes.route_for` (catalogue
fields only). The operator always assigns the serial numbers (løpenummer) and keeps the key
list. Then, per registry:

* distributed: operator → registry (fnr, lopenr); the registry extracts (lopenr, variables);
* TTP pseudonym route: operator → TTP (fnr, lopenr); the TTP replaces fnr by the registry's
  pseudonym; TTP → registry (pseudonym, lopenr); the registry extracts (lopenr, variables);
* consent filter: the registry keeps only persons whose consent covers the project first;
* sealed feed (a pseudonymous registry whose source is its feed, ``ingest = true``): the
  registry loads the feed by sealed ingest before the job's other steps (the TTP replaces
  fødselsnummer by the registry's pseudonym without reading the payload), and its later
  steps read the table that step declares;
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

from collections.abc import Mapping

from koble.linkage import names
from koble.linkage.formats import SUFFIX
from koble.linkage.job import Job, Request
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
    registry_party,
)
from koble.linkage.planner_steps import (
    PlanBuilder,
    plan_ingest,
    plan_population_recovery,
    plan_registry_recovery,
)
from koble.linkage.routes import Route
from koble.registries.catalogue import Catalogue, Registry

__all__ = ["plan_job"]

#: The per-person (or per-record) variables a recovery adds to the researcher's files.
LINK_VARIABLES = ("link_method", "match_probability", "match_weight")
#: The operator's file of how each person was linked (lopenr, link_method, probability).
LINK_METHODS = names.LINK_METHODS


def plan_job(
    job: Job, catalogue: Catalogue | None = None, *, feeds: Mapping[str, str] | None = None
) -> Plan:
    """The plan for ``job``; registries are looked up in ``catalogue`` (bundled by default).

    ``feeds`` names the registries whose data arrive as a sealed feed, each with the feed's
    path (:meth:`Sources.feeds <koble.linkage.sources.Sources.feeds>`): each such registry
    the plan asks for data loads its feed in a ``sealed_ingest`` step first. Without it
    (``koble plan`` given no sources) no registry is taken to arrive as a feed.
    """
    catalogue = catalogue or Catalogue.load()
    periods = plan_periods(job, catalogue)
    entries, routes = periods.entries, periods.routes
    accepted, refusals = periods.planned, periods.refusals
    central = any(routes[r.registry].anonymous_output for r in accepted)
    fed = {r.registry: feeds[r.registry] for r in accepted if feeds and r.registry in feeds}
    uses_ttp = (
        any(routes[r.registry].pseudonymous for r in accepted)
        or bool(fed)  # the TTP pseudonymises a sealed feed's identifiers
        or (bool(accepted) and job.recovers)
    )

    b = PlanBuilder()
    for registry, feed in fed.items():  # first, as the registry's table must be there
        plan_ingest(b, registry, feed)
    if accepted:
        recovered = plan_population_recovery(b, job) if job.recovery is not None else ()
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


def _registry_steps(
    b: PlanBuilder, job: Job, request: Request, route: Route, collector: str
) -> str:
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
    loaded = b.loaded.get(reg, ())  # a sealed feed: the table its ingest step loaded
    recovered: tuple[str, ...] = ()
    if request.recover:
        recovered = (plan_registry_recovery(b, reg, party),)
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
                inputs=(persons, *loaded),
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
            inputs=(source, *recovered, *consent, *loaded),
            outputs=(extract, report),
            registry=reg,
        )
    )
    linked = LINK_VARIABLES if recovered and collector == RESEARCHER else ()
    b.send(done, collector, extract, (SERIAL, *request.variables, *linked))
    b.send(done, OPERATOR, report, ())
    b.reports.append(report)
    return extract


def _central_steps(
    b: PlanBuilder, job: Job, extracts: list[str], variables: tuple[str, ...]
) -> None:
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
    b: PlanBuilder,
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
