"""Identity recovery in a linkage job (issue 16, item 3), before a run: the job's
recovery options, every problem with them reported at once, and the plan that sends names
to the TTP only and recovers before serials are assigned.
"""

from __future__ import annotations

import pytest

from koble.linkage.demo_jobs import write_helsearkiv_job
from koble.linkage.job import JobError, parse_job
from koble.linkage.plan import OPERATOR, RESEARCHER, TTP
from koble.linkage.planner import plan_job
from koble.registries.catalogue import Catalogue
from tests.linkage.conftest import World

NAME_FIELDS = {"first_name", "middle_name", "last_name"}
JOB = """\
[project]
id = "P1"
title = "t"

[population]
file = "pop.parquet"
id_column = "fnr"
{population}

[recipient]
name = "R"
organisation = "O"

[delivery]
format = "csv"

[registries.npr]
approval = {{ kind = "rek", reference = "REK 1" }}
variables = ["start_date"]
period = {{ start = 2015, end = 2020 }}
{extra}
"""


def _job(population: str = "", extra: str = "") -> str:
    return JOB.format(population=population, extra=extra)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


# --- job options ----------------------------------------------------------------------------
def test_job_reads_recovery_options(catalogue: Catalogue) -> None:
    text = _job(
        "recover = true\nthresholds = [0.7, 0.95]\n"
        'fields = { first_name = "fornavn", last_name = "etternavn", birth_date = "fodt" }',
        '\n[registries.helsearkivregisteret]\napproval = { kind = "rek", reference = "R" }\n'
        'variables = ["diagnosis"]\nperiod = { start = 1950, end = 2020 }\nrecover = true\n',
    )
    job = parse_job(text, catalogue)
    assert job.recovery is not None
    assert dict(job.recovery.fields) == {"first_name": "fornavn", "last_name": "etternavn",
                                         "birth_date": "fodt"}  # fmt: skip
    assert job.recovery.thresholds == job.thresholds == (0.7, 0.95)
    assert [r.recover for r in job.requests] == [False, True]
    assert job.recovers


def test_job_reports_every_recovery_problem_at_once(catalogue: Catalogue) -> None:
    text = _job(
        'recover = "yes please"\nthresholds = [0.99, 0.5]',
        '\n[registries.reseptregisteret]\napproval = { kind = "rek", reference = "R" }\n'
        'variables = ["atc"]\nperiod = { start = 2015, end = 2020 }\nrecover = true\n',
    )
    with pytest.raises(JobError) as caught:
        parse_job(text, catalogue)
    messages = " | ".join(p.message for p in caught.value.problems)
    assert "population.recover must be true or false" in messages
    assert "population.thresholds must be [low, high]" in messages
    assert "recover = true needs a registry keyed by fødselsnummer" in messages
    fields = _job('recover = true\nfields = { nickname = "x", last_name = 3 }')
    with pytest.raises(JobError) as caught:
        parse_job(fields, catalogue)
    messages = " | ".join(p.message for p in caught.value.problems)
    assert "unknown record field 'nickname'" in messages
    assert "population.fields.last_name must name a column" in messages
    with pytest.raises(JobError, match="needs the fields the file carries"):
        parse_job(_job("recover = true"), catalogue)


# --- plan -----------------------------------------------------------------------------------
def test_plan_sends_names_to_the_ttp_only_and_recovers_before_serials(world: World) -> None:
    from koble.linkage.job import load_job

    plan = plan_job(load_job(world.distributed, world.catalogue), world.catalogue)
    ids = [s.id for s in plan.steps]
    assert ids.index("operator-prepare-recovery") < ids.index("ttp-resolve-population")
    assert ids.index("ttp-resolve-population") < ids.index("operator-assign-serials")
    for t in plan.transfers:
        if NAME_FIELDS & set(t.columns):
            assert t.target == TTP, t
    back = next(t for t in plan.transfers if t.file == "population_resolved.parquet")
    assert (back.source, back.target) == (TTP, OPERATOR)
    assert not NAME_FIELDS & set(back.columns)
    linkage = next(t for t in plan.transfers if t.file.startswith("linkage."))
    assert (linkage.target, linkage.columns) == (RESEARCHER, ("lopenr", "link_method",
                                                              "match_probability",
                                                              "match_weight"))  # fmt: skip
    prepare = plan.step("operator-prepare-recovery").description
    assert "every row" in prepare and "valid" in prepare
    outputs = [o for s in plan.steps if s.party != RESEARCHER for o in s.outputs]
    assert len(outputs) == len(set(outputs))  # every file a step writes is named once


def test_plan_for_a_registry_that_recovers_its_own_records(world: World) -> None:
    from koble.linkage.job import load_job

    job = load_job(write_helsearkiv_job(world.path, fmt="csv"), world.catalogue)
    plan = plan_job(job, world.catalogue)
    party = "registry:helsearkivregisteret"
    sent = next(t for t in plan.transfers if t.file == "helsearkivregisteret_recover.parquet")
    assert (sent.source, sent.target) == (party, TTP)
    assert {"first_name", "last_name", "birth_date"} <= set(sent.columns)
    back = next(t for t in plan.transfers if t.file == "helsearkivregisteret_resolved.parquet")
    assert (back.source, back.target) == (TTP, party)
    extract = plan.step("helsearkivregisteret-extract")
    assert "helsearkivregisteret_recovered.parquet" in extract.inputs
    delivered = next(t for t in plan.transfers if t.file.startswith("helsearkivregisteret_ext"))
    assert delivered.columns[-3:] == ("link_method", "match_probability", "match_weight")
    assert not NAME_FIELDS & set(delivered.columns)


def test_central_route_keeps_link_variables_out_of_the_anonymous_file(world: World) -> None:
    text = world.central.read_text("utf-8").replace(
        'id_column = "person_id"\n',
        'id_column = "person_id"\nrecover = true\nfields = { birth_date = "birth_date" }\n',
    )
    plan = plan_job(parse_job(text, world.catalogue), world.catalogue)
    assert not any("link_method" in t.columns for t in plan.transfers if t.target == RESEARCHER)
    assert any("not delivered on the central anonymous route" in n for n in plan.notes)
