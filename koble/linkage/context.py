"""What every step of a run is given: the job, plan, sources, keys, workspace and engine.

Steps receive a :class:`Context` and the :class:`~koble.linkage.plan.Step` they carry out;
they read only ``ctx.store(step.party)`` and write only there. The clock value of the run
(``created``) is fixed when the run starts and kept across resumes, so a resumed run writes
the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from koble.errors import InputError
from koble.linkage.engine import Engine
from koble.linkage.job import Job, Request
from koble.linkage.keys import LinkageKeys, write_json
from koble.linkage.plan import Plan
from koble.linkage.routes import Route, regime_within, route_for
from koble.linkage.sources import Sources
from koble.linkage.workspace import Workspace
from koble.pseudonym.keys import RandBytes, check_domain
from koble.registries.catalogue import Catalogue

__all__ = ["Context", "locate_population", "registry_domain"]


def locate_population(job_path: Path, population_file: str, sources: Sources) -> Path:
    """Where the job's ``[population] file`` is: an absolute path as it stands; a relative
    one beside the job file, or else in the data directory (``--world``, or the sources
    file's directory), so ``koble run examples/job.toml --world world`` finds the world's
    population. Found in neither place is an :class:`InputError` naming both."""
    path = Path(population_file)
    if path.is_absolute():
        return path
    beside = job_path.parent / path
    if beside.exists() or sources.population_dir is None:
        return beside
    in_data = sources.population_dir / path
    if in_data.exists():
        return in_data
    raise InputError(
        f"the job's population file {population_file!r} is neither beside the job "
        f"({beside}) nor in the data directory ({in_data})",
        path=job_path,
    )


def registry_domain(registry: str) -> str:
    """The TTP's pseudonym domain for a registry's persons."""
    return check_domain(f"registry:{registry}")


@dataclass
class Context:
    job: Job
    job_path: Path
    job_sha256: str
    plan: Plan
    catalogue: Catalogue
    sources: Sources
    keys: LinkageKeys
    workspace: Workspace
    engine: Engine
    created: datetime.datetime
    randbytes: RandBytes
    test_numbers: bool = False
    #: Told (rows done, rows in all) within a long step, for the run's progress display.
    progress: Callable[[int, int], None] = field(default=lambda _done, _total: None)

    @property
    def population_path(self) -> Path:
        return locate_population(self.job_path, self.job.population_file, self.sources)

    def store(self, party: str) -> Path:
        return self.workspace.store(party)

    def route(self, registry: str | None) -> Route:
        """The registry's route for the data years the plan asks of it (under the identity
        regime in force then: :func:`~koble.linkage.routes.regime_within`)."""
        assert registry is not None
        entry = self.catalogue.get(registry)
        part = self.plan.part(entry.id)
        return route_for(
            entry, None if part is None else regime_within(entry, part.start, part.end)
        )

    def request(self, registry: str | None) -> Request:
        """The job's request as planned for ``registry``: the years of its part (a request
        split by regime or handed on to a successor asks each registry only its own years),
        the request's variables and approval."""
        assert registry is not None
        part = self.plan.part(registry)
        asked = part.requested if part is not None else registry
        request = next(r for r in self.job.requests if r.registry == asked)
        if part is None:
            return request
        return replace(request, registry=registry, start=part.start, end=part.end)

    def write_json(self, path: Path, document: object) -> None:
        write_json(path, document)

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))
