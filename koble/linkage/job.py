"""A linkage job: the TOML file a project hands the operator, read and validated at once.

A job file looks like ``examples/job.toml``::

    [project]
    id = "P2026-014"
    title = "Hip fracture and medication"

    [population]
    file = "population.parquet"
    id_column = "fnr"

    [recipient]
    name = "Kari Nordmann"
    organisation = "Universitetet i Oslo"

    [delivery]
    format = "parquet"                  # parquet, csv, stata, spss, sas

    [registries.npr]                    # a catalogue id (`koble registries list`)
    approval = { kind = "rek", reference = "REK 2026/12345" }
    variables = ["icd10_main", "start_date"]
    period = { start = 2015, end = 2024 }

    [anonymity]                         # needed when a route demands anonymous output
    k = 5
    quasi_identifiers = ["kommune", "start_date"]
    model = "auto"                      # auto | person-set | person-km | row (see README)
    m = 2                               # person-km: any m of a person's rows
    # shape = { unit = "person", kind = "service_type", date = "start_date" }  # one row
    #                                   # per person instead of one per service

    [schemas]                           # optional: variables a registry offers
    my-registry = ["a", "b"]

Variables are checked against a schema: the job's ``[schemas]`` table, a ``schema_file``
(a TOML file of the same shape, relative to the job), else the variables the data holders
offer (``schemas``: a run passes its sources' :meth:`~koble.linkage.sources.Sources.schemas`),
which default to those of a ``koble synth`` world (its ``registries.toml``, see
:mod:`koble.synth.registries`). Variable names follow design.md §1.5.

Validation collects every problem (a :class:`~koble.linkage.job_reader.JobReader`; the
``[registries]`` tables and schemas are read in :mod:`koble.linkage.job_requests`) and raises
one :class:`JobError`. Each problem names the line: :mod:`tomllib` gives no positions, so
:class:`~koble.linkage.toml_lines.Lines` scans the text for table headers (``[a.b]``) and keys
(``key =``, dotted keys included) and maps a key path to the line where it is written; a path
not written out (an inline table's member, a missing key) falls back to its nearest written
parent, and a missing table to line 1.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from koble.anonymity.longitudinal import MODELS, m_problem
from koble.files import read_text
from koble.linkage.job_model import (
    APPROVAL_KINDS,
    FORMATS,
    RECORD_FIELDS,
    Anonymity,
    Approval,
    Job,
    JobError,
    Problem,
    Recovery,
    Request,
    valid_variable_name,
)
from koble.linkage.job_reader import JobReader
from koble.linkage.job_requests import read_requests, read_schemas
from koble.registries.catalogue import Catalogue, Registry
from koble.registries.identifiers.scan import contains_person_number

__all__ = [
    "APPROVAL_KINDS",
    "FORMATS",
    "Anonymity",
    "Approval",
    "Job",
    "JobError",
    "Problem",
    "Request",
    "load_job",
    "parse_job",
    "valid_variable_name",
]

_TOP: Final = {"project", "population", "recipient", "delivery", "registries", "anonymity",
               "schemas", "schema_file"}  # fmt: skip
_POPULATION_KEYS: Final = {"file", "id_column", "recover", "fields", "thresholds"}


def _thresholds(reader: JobReader, value: object) -> tuple[float, float] | None:
    """``[population] thresholds = [low, high]``, 0 < low <= high < 1; None after a problem."""
    if value is None:
        return 0.80, 0.99
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if ok and isinstance(value, list) and 0 < value[0] <= value[1] < 1:
        return float(value[0]), float(value[1])
    reader.problem(
        reader.at.line("population", "thresholds"),
        "population.thresholds must be [low, high] match probabilities with "
        "0 < low <= high < 1, e.g. [0.8, 0.99]",
    )
    return None


def _recovery(reader: JobReader, population: Mapping[str, Any]) -> Recovery | None:
    """``[population] recover = true`` with ``fields`` (record field -> population column);
    None when recovery is off or after a problem."""
    recover = population.get("recover", False)
    fields = population.get("fields")
    if not isinstance(recover, bool):
        reader.problem(reader.at.line("population", "recover"),
                       "population.recover must be true or false")  # fmt: skip
        return None
    if not recover:  # fields may stay written: recover = false turns recovery off
        return None
    usage = (
        "population.fields must map record fields to the file's columns, e.g. "
        '{ first_name = "fornavn", last_name = "etternavn", birth_date = "fodt" }'
    )
    line = reader.at.line("population", "fields")
    if not isinstance(fields, Mapping) or not fields:
        reader.problem(line, f"recover = true needs the fields the file carries: {usage}")
        return None
    ok = True
    for name, column in fields.items():
        if name not in RECORD_FIELDS:
            reader.problem(line, f"population.fields: unknown record field {name!r}; use "
                           f"{', '.join(RECORD_FIELDS)}")  # fmt: skip
            ok = False
        elif not isinstance(column, str) or not column.strip():
            reader.problem(line, f"population.fields.{name} must name a column")
            ok = False
    columns = [c for c in fields.values() if isinstance(c, str)]
    if len(set(columns)) != len(columns):
        reader.problem(line, "population.fields names one column for two fields")
        ok = False
    if ok and not {"first_name", "last_name", "birth_date"} & set(fields):
        reader.problem(line, "population.fields must carry a name or the birth date: "
                       "without them no record can be matched")  # fmt: skip
        ok = False
    if not ok:
        return None
    return Recovery({str(k): str(v).strip() for k, v in fields.items()})


def _anonymity(
    reader: JobReader, data: Mapping[str, Any], requests: list[tuple[Request, Registry]]
) -> Anonymity | None:
    needs = [(r, entry.id) for r, entry in requests if entry.anonymous_output is True]
    if "anonymity" not in data:
        if needs:
            reader.problem(
                needs[0][0].line,
                f"{', '.join(i for _, i in needs)} may only leave in anonymous form: add an "
                "[anonymity] table with k and quasi_identifiers",
            )
        return None
    table = reader.table(data, "anonymity", required=False)
    reader.unknown_keys(
        table,
        {"k", "quasi_identifiers", "max_suppression", "hierarchies", "model", "m", "shape"},
        "anonymity",
    )
    hierarchies = table.get("hierarchies", {})
    if not isinstance(hierarchies, Mapping) or not all(
        isinstance(v, str) for v in hierarchies.values()
    ):
        reader.problem(
            reader.at.line("anonymity", "hierarchies"),
            "anonymity.hierarchies must map quasi-identifiers to hierarchy names, e.g. "
            '{ kommune = "kommune", start_date = "date" }',
        )
        hierarchies = {}
    k, qis, limit = (
        table.get("k"),
        table.get("quasi_identifiers"),
        table.get("max_suppression", 0.0),
    )
    ok = True
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        reader.problem(reader.at.line("anonymity", "k"), "anonymity.k must be an integer ≥ 2")
        ok = False
    requested = {v.casefold() for r, _ in requests for v in r.variables}
    if not isinstance(qis, list) or not qis or not all(isinstance(q, str) for q in qis):
        reader.problem(
            reader.at.line("anonymity", "quasi_identifiers"),
            "anonymity.quasi_identifiers must be a non-empty list of requested variables",
        )
        ok = False
    else:
        for name in qis:
            if name.casefold() not in requested:
                reader.problem(
                    reader.at.value(name, "anonymity", "quasi_identifiers"),
                    f"quasi-identifier {name!r} is not a requested variable",
                )
                ok = False
    if not isinstance(limit, int | float) or isinstance(limit, bool) or not 0 <= limit <= 1:
        reader.problem(
            reader.at.line("anonymity", "max_suppression"),
            "anonymity.max_suppression must be a fraction between 0 and 1",
        )
        ok = False
    if isinstance(qis, list):
        for name in sorted(set(hierarchies) - set(qis)):
            reader.problem(
                reader.at.line("anonymity", "hierarchies"),
                f"anonymity.hierarchies names {name!r}, which is not a quasi-identifier",
            )
            ok = False
    model, m = table.get("model", "auto"), table.get("m", 2)
    if model not in ("auto", *MODELS):
        reader.problem(
            reader.at.line("anonymity", "model"),
            f"anonymity.model must be one of auto, {', '.join(MODELS)}",
        )
        ok = False
    if (problem := m_problem(m, "anonymity.m")) is not None:
        reader.problem(reader.at.line("anonymity", "m"), problem)
        ok = False
    shape = _shape(reader, table.get("shape"), requested)
    if not ok or shape is None:
        return None
    assert isinstance(k, int) and isinstance(qis, list) and isinstance(m, int)
    return Anonymity(k, tuple(qis), float(limit), dict(hierarchies), str(model), m, *shape)


def _shape(
    reader: JobReader, value: object, requested: set[str]
) -> tuple[str, str | None, str | None] | None:
    """``[anonymity] shape``: absent (rows), or ``{ unit = "person", kind = ..., date = ... }``
    naming requested variables; None after a problem."""
    if value is None:
        return "rows", None, None
    at = reader.at.line("anonymity", "shape")
    usage = ('anonymity.shape must be { unit = "person", kind = "<variable>", '
             'date = "<variable>" } (date optional)')  # fmt: skip
    if (
        not isinstance(value, Mapping)
        or value.get("unit") != "person"
        or not (set(value) <= {"unit", "kind", "date"})
    ):
        reader.problem(at, usage)
        return None
    kind, date = value.get("kind"), value.get("date")
    ok = True
    for role, name in (("kind", kind), ("date", date)):
        if name is None and role == "date":
            continue
        if not isinstance(name, str) or name.casefold() not in requested:
            reader.problem(at, f"anonymity.shape.{role} must name a requested variable")
            ok = False
    return ("person", str(kind), None if date is None else str(date)) if ok else None


def _person_numbers(reader: JobReader, value: object, path: tuple[str, ...]) -> None:
    """Report every value (and key) of the job that holds a person number, by the audit log's
    rule (:func:`~koble.registries.identifiers.scan.contains_person_number`): the project id,
    title, recipient and every other field end up in the researcher's manifest and quality
    report, which must never hold an identifier. Problems name the field, never the value."""
    where = ".".join(path) or "the job"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if contains_person_number(str(key)):
                reader.problem(  # the key's own line: a table header or a key = value
                    reader.at.line(*path, str(key)),
                    f"a key in {where} holds a person number; {_NEVER}",
                )
            else:
                _person_numbers(reader, item, (*path, str(key)))
    elif isinstance(value, list):
        for item in value:
            _person_numbers(reader, item, path)
    elif (
        isinstance(value, str | int)
        and not isinstance(value, bool)
        and contains_person_number(str(value))
    ):
        reader.problem(reader.at.line(*path), f"{where} holds a person number; {_NEVER}")


_NEVER = "a job's fields go into the delivery and must never hold an identifier"


def parse_job(
    text: str,
    catalogue: Catalogue,
    *,
    path: str | Path | None = None,
    schemas: Mapping[str, tuple[str, ...]] | None = None,
) -> Job:
    """Read and validate a job; every problem is reported in one :class:`JobError`.
    ``schemas``: the variables each registry's data holder offers, by catalogue id (a run's
    :meth:`~koble.linkage.sources.Sources.schemas`); None: a ``koble synth`` world's."""
    label = None if path is None else str(path)
    reader = JobReader(text, label, catalogue)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise JobError(
            [Problem(int(match.group(1)) if match else 1, f"not valid TOML: {exc}")], path=path
        ) from None
    reader.unknown_keys(data, set(_TOP))
    _person_numbers(reader, data, ())
    project = reader.table(data, "project", required=True)
    reader.unknown_keys(project, {"id", "title"}, "project")
    project_id = reader.text(project, "project", "id")
    title = reader.text(project, "project", "title")
    population = reader.table(data, "population", required=True)
    reader.unknown_keys(population, set(_POPULATION_KEYS), "population")
    population_file = reader.text(population, "population", "file")
    id_column = reader.text(population, "population", "id_column")
    recovery = _recovery(reader, population)
    thresholds = _thresholds(reader, population.get("thresholds"))
    recipient = reader.table(data, "recipient", required=True)
    reader.unknown_keys(recipient, {"name", "organisation"}, "recipient")
    name = reader.text(recipient, "recipient", "name")
    organisation = reader.text(recipient, "recipient", "organisation")
    delivery = reader.table(data, "delivery", required=True)
    reader.unknown_keys(delivery, {"format"}, "delivery")
    fmt = reader.text(delivery, "delivery", "format").casefold()
    if fmt and fmt not in FORMATS:
        reader.problem(
            reader.at.line("delivery", "format"),
            f"delivery format {fmt!r} is not one of {', '.join(FORMATS)}",
        )
    base = Path(path).parent if path is not None else None
    offered = read_schemas(reader, data, base, schemas)
    requests = read_requests(reader, data, offered)
    anonymity = _anonymity(reader, data, requests)
    if reader.problems:
        raise JobError(reader.problems, path=path)
    return Job(
        project_id=project_id,
        title=title,
        population_file=population_file,
        id_column=id_column,
        recipient=name,
        organisation=organisation,
        delivery_format=fmt,
        requests=tuple(r for r, _ in requests),
        anonymity=anonymity,
        source=label,
        recovery=None
        if recovery is None or thresholds is None
        else Recovery(recovery.fields, thresholds),
        thresholds=thresholds or (0.80, 0.99),
    )


def load_job(
    path: str | Path,
    catalogue: Catalogue | None = None,
    *,
    schemas: Mapping[str, tuple[str, ...]] | None = None,
) -> Job:
    """Read the job file at ``path`` against ``catalogue`` (the bundled one by default) and
    the data holders' ``schemas`` (see :func:`parse_job`)."""
    path = Path(path)
    text = read_text(path)
    return parse_job(text, catalogue or Catalogue.load(), path=path, schemas=schemas)
