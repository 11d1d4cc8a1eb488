"""Linkage jobs: plan who sends what to whom, run the plan, deliver, verify, reproduce.

The public face (everything else in the package is its machinery)::

    from koble.linkage import plan_job, run_job, verify_delivery, reproduce

    plan = plan_job(load_job(path))        # pure: steps per party, transfers, refusals
    result = run_job(path, workspace, keys_dir=..., kek=..., randbytes=os.urandom, ...)
    report = verify_delivery(result.delivery)
    again = reproduce(path, other_workspace, against=result.delivery, ...)

The names are loaded when first used, so importing one module of the package (say
:mod:`koble.linkage.names`) does not load the executor and its engines.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from koble.linkage.executor import RunResult, run_job
    from koble.linkage.job import load_job
    from koble.linkage.job_model import Job
    from koble.linkage.plan import Plan
    from koble.linkage.planner import plan_job
    from koble.linkage.reproduce import ReproduceReport
    from koble.linkage.reproduce import reproduce_job as reproduce
    from koble.linkage.verify import VerifyReport, verify_delivery

__all__ = [
    "Job",
    "Plan",
    "ReproduceReport",
    "RunResult",
    "VerifyReport",
    "load_job",
    "plan_job",
    "reproduce",
    "run_job",
    "verify_delivery",
]

_WHERE = {
    "Job": ("koble.linkage.job_model", "Job"),
    "load_job": ("koble.linkage.job", "load_job"),
    "Plan": ("koble.linkage.plan", "Plan"),
    "plan_job": ("koble.linkage.planner", "plan_job"),
    "RunResult": ("koble.linkage.executor", "RunResult"),
    "run_job": ("koble.linkage.executor", "run_job"),
    "VerifyReport": ("koble.linkage.verify", "VerifyReport"),
    "verify_delivery": ("koble.linkage.verify", "verify_delivery"),
    "ReproduceReport": ("koble.linkage.reproduce", "ReproduceReport"),
    "reproduce": ("koble.linkage.reproduce", "reproduce_job"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'koble.linkage' has no attribute {name!r}")
    return getattr(import_module(where[0]), where[1])


def __dir__() -> list[str]:
    return sorted(__all__)
