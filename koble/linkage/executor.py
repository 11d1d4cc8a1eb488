"""Run a plan: every step by its party, every transfer sealed, signed and opened; resumable.

:func:`run_job` reads the job, plans it, opens the workspace (one directory per party,
:mod:`koble.linkage.workspace`) and carries out the plan's steps in order. After a step,
each file the plan sends is sealed to its recipient and signed by its sender
(:mod:`koble.linkage.transfer`), moved to the recipient's inbox and opened there (the
signature checked against the sender the plan names) into the recipient's store.

Resuming: ``run.json`` records the job's hash, the plan's hash (so a different catalogue is
noticed), a fingerprint of every data source (file, size, modification time), the run's
clock value and each completed step (with the SHA-256 of what it wrote); a resume with
anything of these changed is refused. Every file is written to a temporary name, fsynced and
renamed (the directories a step wrote in are fsynced once each, together, when it ends; a
step's transfers are fsynced together before their renames), and a step is recorded only
after its transfers are delivered and durable and its audit event written (the event's and
``run.json``'s fsyncs wait together, ``run.json`` renamed after both; its directory synced
when the run ends: a record a power loss takes back is a step redone), so a crash or kill
leaves either a completed step or one that is redone from the start. Running again continues after
the last completed step and, because the clock value is kept, writes the same bytes. The
researcher's delivery directory appears by a rename in the last step: no partial delivery.

Failing: the inputs are checked before anything is written (:mod:`koble.linkage.preflight`),
and a run that fails having done nothing leaves nothing behind
(:func:`koble.linkage.workspace.undone_on_failure`). A run that did something is kept;
``restart`` sets it aside (:func:`_restart`) so a changed job can start afresh.

Every completed step is also an event in the run's audit log (:data:`AUDIT_LOG`): the party,
the action, counts, key ids and output hashes, never an identifier.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from koble.digests import sha256_file
from koble.errors import UsageError
from koble.files import (
    OutputSet,
    directories_synced_at_end,
    directory_syncs_owed_to,
    sync_directories,
    write_bytes_after,
)
from koble.linkage.context import Context, locate_population
from koble.linkage.engine import engine_named
from koble.linkage.job import Job, load_job
from koble.linkage.keys import LinkageKeys, read_json, write_json
from koble.linkage.plan import OPERATOR, RESEARCHER, Plan, Step
from koble.linkage.planner import plan_job
from koble.linkage.preflight import preflight
from koble.linkage.sources import Sources
from koble.linkage.step_stats import StepStats
from koble.linkage.steps_central import gate_step, link_step
from koble.linkage.steps_deliver import DELIVERY, deliver_step, receive_step, refuse_step
from koble.linkage.steps_ingest import ingest_step
from koble.linkage.steps_keys import assign_serials_step, pseudonymise_step, send_persons_step
from koble.linkage.steps_recovery import (
    apply_recovery_step,
    prepare_population_step,
    prepare_registry_step,
    resolve_step,
)
from koble.linkage.steps_registry import consent_step, extract_step
from koble.linkage.transfer import open_into, seal_into
from koble.linkage.workspace import (
    STATE,
    Workspace,
    json_text,
    move_aside,
    restart_dir,
    undone_on_failure,
)
from koble.locking import directory_lock
from koble.pseudonym.audit import AuditHead, AuditLog, AuditNotClosedError, check_event
from koble.pseudonym.keys import Clock, RandBytes
from koble.pseudonym.keystore import KeyWrapper
from koble.registries.catalogue import Catalogue

__all__ = ["RunResult", "StepEvent", "run_job"]

Handler = Callable[[Context, Step], StepStats]
HANDLERS: dict[str, Handler] = {
    "assign_serials": assign_serials_step,
    "send_population_extract": send_persons_step,
    "pseudonymise_for_registry": pseudonymise_step,
    "consent_filter": consent_step,
    "extract": extract_step,
    "link_centrally": link_step,
    "anonymity_gate": gate_step,
    "deliver": deliver_step,
    "receive": receive_step,
    "refuse": refuse_step,
    "resolve_identities": resolve_step,
    "apply_recovery": apply_recovery_step,
    "sealed_ingest": ingest_step,
}


def _prepare_recovery(ctx: Context, step: Step) -> StepStats:
    """The population's holder (the operator) or a registry picks out its records."""
    return (prepare_registry_step if step.registry else prepare_population_step)(ctx, step)


HANDLERS["prepare_recovery"] = _prepare_recovery
SUFFIX = ".koblt"
#: The run's tamper-evident audit log (hash-chained, checkpoints signed by the operator key);
#: check it with ``koble audit verify-log ws/audit.log --public-key KEYS/operator.signing.pub.pem``.
AUDIT_LOG = "audit.log"
#: Called with (step, "start" | "done" | "skip", index, total) as the run moves on.
StepEvent = Callable[[Step, str, int, int], None]


@dataclass
class RunResult:
    workspace: Path
    delivery: Path
    plan: Plan
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    resumed: int = 0
    total_seconds: float = 0.0
    #: Each step's CPU seconds (the process's, every thread: the engine's included), as
    #: :attr:`seconds` its wall time: the steadier measure on a machine shared with other work.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: The part of each step's :attr:`seconds` and :attr:`cpu_seconds` spent on the files the
    #: plan sends after it (sealed, signed, moved and opened: :func:`_transfer`), as
    #: ``(wall, cpu)``: the protocol's cost, apart from the step's own work.
    transfer_seconds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace),
            "delivery": str(self.delivery),
            "route": self.plan.route,
            "steps": len(self.plan.steps),
            "resumed_after": self.resumed,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "total_seconds": round(self.total_seconds, 3),
            "stats": self.stats,
        }


def _job_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint(path: Path | None) -> list[Any] | None:
    """A cheap identity of a data file: its name, size and modification time (hashing a
    national table on every resume would cost minutes)."""
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), info.st_size, info.st_mtime_ns]


def _sources_print(sources: Sources, job: Job, plan: Plan) -> dict[str, Any]:
    # the registries asked, and those the plan hands years on to (a successor)
    named = {r.registry for r in job.requests} | {p.registry for p in plan.accepted}
    prints: dict[str, Any] = {
        reg: [_fingerprint(s.file), s.id_column, s.date_column, s.consent_column, s.ingest]
        # a changed opt-out table is changed data (absent: the print is as before)
        + ([] if s.reservations is None else [_fingerprint(s.reservations)])
        for reg, s in sorted(sources.registries.items())
        if reg in named
    }
    prints["(identity history: operator)"] = _fingerprint(sources.operator_history)
    prints["(identity history: ttp)"] = _fingerprint(sources.ttp_history)
    if job.recovers:  # the register recovery resolves against: a changed one is changed data
        register = sources.ttp_register
        prints["(population register: ttp)"] = (
            None if register is None else _fingerprint(register / "persons.parquet")
        )
    return prints


def _state(
    root: Path, job_sha: str, plan_sha: str, sources: dict[str, Any], now: Clock
) -> dict[str, Any]:
    """The run's state: the one in ``root`` to resume, or a new one. A stored run that did
    something (a step completed, a feed loaded) and differs in job, plan or data is refused,
    saying how to start again (``--restart``); one that did nothing is simply replaced."""
    path = root / STATE
    if path.is_file():
        state: dict[str, Any] = read_json(path)
        before = state.get("sources", sources)
        changed = sorted(k for k in set(before) | set(sources) if before.get(k) != sources.get(k))
        if state.get("job_sha256") != job_sha:
            problem = f"{root} holds a run of another job (or the job file changed since)"
        elif state.get("plan_sha256", plan_sha) != plan_sha:
            problem = (
                f"{root}: the plan differs from the one the stopped run followed (another "
                "catalogue, or --catalogue left out?); resume with the same catalogue"
            )
        elif changed:
            problem = (
                f"{root}: data sources changed since the stopped run ({', '.join(changed)}); "
                "resume with the same data"
            )
        else:
            return state
        # "setup": the feeds a koble from before the sealed ingest was a step loaded first
        done, loaded = len(state.get("done") or {}), len(state.get("setup") or {})
        if done or loaded:
            feeds = f" and loaded {loaded} feed(s)" if loaded else ""
            raise UsageError(
                f"{problem}. That run completed {done} step(s){feeds}: "
                "to start this job afresh in the same workspace, run again with --restart "
                f"(the earlier run's records are kept under {root / 'restarted'}, and the "
                "audit log continues), or use a new workspace"
            )
    created = now().astimezone(datetime.UTC).replace(microsecond=0)
    return {
        "job_sha256": job_sha,
        "plan_sha256": plan_sha,
        "sources": sources,
        "created": created.isoformat(),
        "done": {},
    }


def _transfer(ctx: Context, step: Step) -> None:
    """Seal, move and open every file the plan sends after ``step``.

    Each envelope is sealed into a temporary file in the sender's outbox and opened from
    there into a temporary file in the recipient's store; the step's envelopes and opened
    files are then fsynced together and renamed (:class:`OutputSet` ``together``: one wait
    for the disk per step instead of two per transfer, and still no name before its file is
    whole), and each envelope moved to the recipient's inbox."""
    ws = ctx.workspace
    moves: list[tuple[Path, Path]] = []
    with OutputSet(together=True) as staged:
        for t in ctx.plan.transfers_after(step.id):
            name = f"{t.id}-{t.file}{SUFFIX}"
            outbox, inbox = ws.outbox(t.source) / name, ws.inbox(t.target) / name
            with staged.file(outbox) as sealed:
                seal_into(
                    ws.store(t.source) / t.file,
                    sealed,
                    transfer=f"{ctx.job.project_id}/{t.id}",
                    sender=ws.keys(t.source).sign,
                    recipient=ws.public_receive(t.target),
                    randbytes=ctx.randbytes,
                )
            with staged.file(ws.store(t.target) / t.file) as opened:
                open_into(
                    sealed,
                    opened,
                    key=ws.keys(t.target).receive,
                    sender_public=ws.public_sign(t.source),
                    transfer=f"{ctx.job.project_id}/{t.id}",
                    named=inbox,
                )
            moves.append((outbox, inbox))
    for outbox, inbox in moves:
        outbox.replace(inbox)  # its directories are synced with the step's (_step_writes)


def _step_writes(step: Step) -> contextlib.AbstractContextManager[None]:
    """Where a step's files and transfers are written: their directories fsynced once each
    at the step's end (:func:`directories_synced_at_end`), before its audit event and
    ``run.json`` record it done. A sealed ingest syncs as it goes: a redone ingest keeps a
    table it finds loaded, so its names must be durable in the order it writes them."""
    return (
        contextlib.nullcontext() if step.action == "sealed_ingest" else directories_synced_at_end()
    )


def _audit(log: AuditLog | None, step: Step, stats: StepStats, written: dict[str, str]) -> None:
    """One audit event per completed step: who, what, counts and hashes; never identifiers.

    With ``log`` None the event is only checked (:func:`check_event`): the run calls that
    before a step starts, so a step whose event the log would refuse (a party or registry name
    it cannot hold) is stopped before it does any work, not after, unaudited.
    """
    (log.append if log is not None else check_event)(
        actor=step.party,
        operation=f"linkage.{step.action}",
        domain=stats.domain,
        key_id=stats.key_id,
        rows_in=stats.rows_in,
        rows_out=stats.rows_out,
        rejected=stats.rejected,
        output_sha256=next(iter(written.values()), None),
        details={
            **stats.audit,
            "step": step.id,
            "registry": step.registry,
            "outputs": len(written),
        },
    )


def _restart(workspace: Path, keys_dir: Path, keys: LinkageKeys, now: Clock) -> None:
    """``--restart``: set the run in ``workspace`` aside (:func:`move_aside`) so the job
    starts afresh. The audit log stays and continues: the restart is an event in it (the
    stopped run's job hash, its completed steps and where its records went), written before
    anything is moved, so a restart is never unrecorded."""
    if not (workspace / STATE).is_file():
        return  # nothing to set aside
    previous: dict[str, Any] = read_json(workspace / STATE)
    keep = [AUDIT_LOG]
    with contextlib.suppress(ValueError):  # a key directory inside the workspace stays
        keep.append(keys_dir.resolve().relative_to(workspace.resolve()).parts[0])
    target = restart_dir(workspace, now())
    event: dict[str, Any] = {
        "actor": OPERATOR,
        "operation": "linkage.restart",
        "input_sha256": previous.get("job_sha256"),
        "details": {
            "moved_to": target.relative_to(workspace).as_posix(),
            "steps_done": len(previous.get("done") or {}),  # a sealed ingest is a step
            # the feeds a koble from before the ingest was a step loaded outside the steps
            **({"feeds_loaded": len(previous["setup"])} if previous.get("setup") else {}),
        },
    }
    check_event(**event)
    with AuditLog(workspace / AUDIT_LOG, keys.signer, now) as log:
        log.append(**event)
        move_aside(workspace, target, keep=tuple(keep))


_Run = TypeVar("_Run", bound=Callable[..., "RunResult"])


def _one_run_per_workspace(run: _Run) -> _Run:
    """Hold the workspace's lock for the whole run: a second ``koble run`` (or reproduction)
    in the same workspace is refused at once rather than racing this one over ``run.json``,
    the parties' keys and the audit log."""

    @functools.wraps(run)
    def locked(job_path: Path, workspace: Path, **options: Any) -> RunResult:
        existed = workspace.exists()
        with (
            directory_lock(workspace),
            undone_on_failure(workspace, existed=existed, audit_log=AUDIT_LOG),
        ):  # a run that fails having done nothing leaves nothing behind
            result: RunResult = run(job_path, workspace, **options)
        return result

    return cast(_Run, locked)


@_one_run_per_workspace
def run_job(
    job_path: Path,
    workspace: Path,
    *,
    keys_dir: Path,
    kek: KeyWrapper,
    sources: Sources,
    now: Clock,
    randbytes: RandBytes,
    catalogue: Catalogue | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
    spark_remote: str | None = None,
    memory_limit: str | None = None,
    test_numbers: bool = False,
    created: datetime.datetime | None = None,
    on_step: StepEvent | None = None,
    stop_after: str | None = None,
    on_audit_close: Callable[[AuditHead], None] | None = None,
    restart: bool = False,
) -> RunResult:
    """Run (or resume) the job at ``job_path`` in ``workspace``; see the module docstring.

    ``engine`` is where the registries' SQL runs (``duckdb``, or ``spark`` on
    ``spark_master`` or ``spark_remote``, local mode without either: see
    :mod:`koble.linkage.engine_spark`; ``memory_limit`` caps DuckDB's). ``created`` fixes
    the run's clock value (a reproduction passes the original's);
    ``stop_after`` stops after the named step, as a crash there would (for tests);
    ``on_audit_close`` gets the head and entry count of the run's audit log once it is
    closed (the CLI prints them). One run at a time per workspace: a second is refused.
    ``restart`` sets a run already in the workspace aside (:func:`_restart`) and starts
    afresh. The population and every source are checked (:func:`preflight`) before anything
    is written.
    """
    started = time.perf_counter()
    catalogue = catalogue or Catalogue.load()
    # variables are checked against what the data holders offer, where their sources say
    job: Job = load_job(job_path, catalogue, schemas=sources.schemas() or None)
    plan = plan_job(job, catalogue, feeds=sources.feeds())  # a sealed feed: an ingest step
    if plan.route == "refused":
        reasons = "; ".join(f"{r.registry}: {r.reason}" for r in plan.refusals)
        raise UsageError(f"every registry in the job is refused, nothing to run: {reasons}")
    locate_population(job_path, job.population_file, sources)  # missing: stop before writing
    preflight(job, job_path, plan, catalogue, sources)  # unusable input: stop before writing
    job_sha = _job_sha(job_path)
    plan_sha = hashlib.sha256(plan.to_json().encode()).hexdigest()
    keys = LinkageKeys.open_or_create(keys_dir, kek, randbytes=randbytes, now=now)
    if restart:
        _restart(workspace, keys_dir, keys, now)
    state = _state(workspace, job_sha, plan_sha, _sources_print(sources, job, plan), now)
    if created is not None and not state["done"]:
        state["created"] = created.isoformat(timespec="seconds")
    with directories_synced_at_end():  # the parties' key files and the state: a sync a directory
        ws = Workspace.open(workspace, [p.id for p in plan.parties], kek, randbytes=randbytes)
        write_json(workspace / STATE, state)
    ctx = Context(
        job,
        job_path,
        job_sha,
        plan,
        catalogue,
        sources,
        keys,
        ws,
        engine_named(engine, master=spark_master, remote=spark_remote, memory_limit=memory_limit),
        datetime.datetime.fromisoformat(state["created"]),
        randbytes,
        test_numbers,
    )
    result = RunResult(workspace, ws.party_root(RESEARCHER) / DELIVERY, plan)
    log = AuditLog(workspace / AUDIT_LOG, keys.signer, now, on_close=on_audit_close)
    recorded: set[Path] = set()  # run.json's directory, synced once when the run ends
    failed = True
    try:
        total = len(plan.steps)
        for index, step in enumerate(plan.steps, 1):
            if step.id in state["done"]:
                result.resumed = index
                if on_step:
                    on_step(step, "skip", index, total)
                continue
            if on_step:
                on_step(step, "start", index, total)
            tick, cpu = time.perf_counter(), time.process_time()
            _audit(
                None, step, StepStats.of({}), {}
            )  # an event the log refuses stops the step before it runs
            if on_step:  # rows done of all, within a long step (a sealed ingest)
                ctx.progress = functools.partial(on_step, step, "rows")
            with _step_writes(step):
                stats = HANDLERS[step.action](ctx, step)
                sent, sent_cpu = time.perf_counter(), time.process_time()
                _transfer(ctx, step)
                result.transfer_seconds[step.id] = (
                    time.perf_counter() - sent,
                    time.process_time() - sent_cpu,
                )
            seconds = time.perf_counter() - tick
            result.cpu_seconds[step.id] = time.process_time() - cpu
            store = ws.store(step.party)
            written = {o: sha256_file(store / o) for o in step.outputs if (store / o).is_file()}
            state["done"][step.id] = {
                "seconds": round(seconds, 3),
                "stats": stats.record(),
                "outputs": written,
            }
            # Audited before run.json marks it done (the event durable before run.json's
            # rename; the two fsyncs wait together): a kill in between reruns the step (and
            # records it again), never leaves a done step without its event. run.json's
            # directory is synced at the run's end: a record a crash loses is a step redone.
            with directory_syncs_owed_to(recorded):
                write_bytes_after(
                    workspace / STATE,
                    json_text(state).encode("utf-8"),
                    functools.partial(_audit, log, step, stats, written),
                )
            result.seconds[step.id] = seconds
            if on_step:
                on_step(step, "done", index, total)
            if stop_after == step.id:
                break
        failed = False
    except BaseException:
        with contextlib.suppress(AuditNotClosedError):  # the run's own error is the one to see
            log.close()
        raise
    finally:
        sync_directories(recorded, failed=failed)
        ctx.engine.close()
        log.close()
    result.stats = {k: v["stats"] for k, v in state["done"].items()}
    result.total_seconds = time.perf_counter() - started
    return result
