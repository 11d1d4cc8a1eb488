"""The operator's and TTP's data work on the engine (issue 17, part 2).

The TTP's pseudonymisation runs as :meth:`Engine.pseudonymise` (DuckDB: Arrow batches through
the column-at-once cipher): the frozen known answers bit for bit, NULLs kept, the same bytes
whatever the batch sizes, no value or key in an error. The TTP does not validate and resolve
again what the operator sent; its one cheap check sends a list that is not what the operator
should send (an identifier its own history knows as an old one, a malformed one) through
full validation and resolution.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koble.errors import UsageError
from koble.linkage import engine as engine_module
from koble.linkage import names, steps_keys
from koble.linkage.context import registry_domain
from koble.linkage.engine import DuckDBEngine
from koble.linkage.executor import RunResult
from koble.linkage.keys import LinkageKeys
from koble.linkage.plan import FNR, SERIAL
from koble.linkage.reports import TtpReport, read_report
from koble.linkage.workspace import party_dir
from koble.pseudonym.domain_cipher import domain_cipher
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.pseudonymise import pseudonymise_frame, pseudonymise_values
from koble.pseudonym.serials import assign_serials
from tests.linkage.conftest import World
from tests.pseudonym.test_scheme import KEY, KNOWN_ANSWERS

PSEUDONYMOUS = "reseptregisteret"


@pytest.fixture
def duck() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(threads=1)
    yield engine
    engine.close()


def test_known_answers_through_duckdb(duck: DuckDBEngine, tmp_path: Path) -> None:
    keyset = keyset_from_key(KEY)
    for (domain, id_scheme, identifier), expected in KNOWN_ANSWERS.items():
        out = tmp_path / f"{domain}-{identifier}.parquet"
        cipher = domain_cipher(keyset, domain, id_scheme)  # type: ignore[arg-type]
        rows = duck.pseudonymise(
            "SELECT id, n FROM t", {"t": pa.table({"id": [identifier, None], "n": [1, 2]})},
            {"id": cipher}, out,
        )  # fmt: skip
        assert rows == 2
        table = pq.read_table(out)
        assert table.column("id").to_pylist() == [expected, None]
        assert table.column("n").to_pylist() == [1, 2]


def test_batches_and_row_groups_do_not_change_the_result(
    duck: DuckDBEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 5_000
    rng = np.random.default_rng(7)
    ids = pl.Series(rng.integers(10**9, 10**11, n)).cast(pl.String).str.zfill(11)
    source = tmp_path / "ids.parquet"
    pl.DataFrame({"fnr": ids, "row": np.arange(n)}).write_parquet(source)
    keyset = keyset_from_key(KEY)
    sql = "SELECT fnr AS pseudonym, row FROM t ORDER BY row"
    outputs = []
    for size in (1_000_000, 700):  # one batch and group; many, cut across the groups
        monkeypatch.setattr(engine_module, "ROW_GROUP_ROWS", size)
        out = tmp_path / f"out-{size}.parquet"
        assert duck.pseudonymise(sql, {"t": source}, {"pseudonym": domain_cipher(keyset, "npr")},
                                 out) == n  # fmt: skip
        outputs.append(out)
    assert pq.ParquetFile(outputs[1]).metadata.num_row_groups == -(-n // 700)
    first, second = (pq.read_table(o) for o in outputs)
    assert first.equals(second)
    assert first.column("row").to_pylist() == list(range(n))
    expected = pseudonymise_values(keyset, "npr", ids)
    assert first.column("pseudonym").to_pylist() == expected.to_list()


def test_no_value_or_key_in_an_error(duck: DuckDBEngine, tmp_path: Path) -> None:
    cipher = domain_cipher(keyset_from_key(KEY), "npr")
    table = pa.table({"fnr": ["15108695088", "Kari Nordmann"]})
    with pytest.raises(UsageError) as info:
        duck.pseudonymise("SELECT fnr FROM t", {"t": table}, {"fnr": cipher},
                          tmp_path / "x.parquet")  # fmt: skip
    message = str(info.value)
    assert "not a compact identifier" in message
    assert "Kari" not in message and "15108695088" not in message
    assert cipher._key.hex() not in message and KEY.hex() not in message
    with pytest.raises(UsageError, match="no column 'fnr'"):
        duck.pseudonymise("SELECT 1 AS x", {}, {"fnr": cipher}, tmp_path / "y.parquet")


# --- the TTP's step in a run ----------------------------------------------------------------


def _ttp_files(result: RunResult) -> tuple[Path, Path, TtpReport]:
    step = next(s for s in result.plan.steps if s.id == f"ttp-pseudonymise-{PSEUDONYMOUS}")
    store = result.workspace / party_dir("ttp") / "store"
    report = read_report(store / names.ttp_report(PSEUDONYMOUS), TtpReport)
    return store / step.inputs[0], store / step.outputs[0], report


def _keys(world: World, result: RunResult) -> LinkageKeys:
    workspace = result.workspace
    return LinkageKeys.load(workspace.parent / f"{workspace.name}-keys", world.kek)


def test_the_ttp_step_gives_what_full_validation_gives(
    world: World, distributed_run: RunResult
) -> None:
    received, made, report = _ttp_files(distributed_run)
    persons = pl.read_parquet(received)
    assert world.sources.ttp_history is not None
    full = pseudonymise_frame(
        persons, FNR, keyset=_keys(world, distributed_run).ttp,
        domain=registry_domain(PSEUDONYMOUS),
        history=IdentityHistory.read(world.sources.ttp_history),
        output_column=names.pseudonym_column(PSEUDONYMOUS),
    )  # fmt: skip
    column = names.pseudonym_column(PSEUDONYMOUS)
    assert pl.read_parquet(made).equals(full.table.select(column, SERIAL))
    # and the step took the engine's path: its check finds nothing to validate or resolve
    engine = DuckDBEngine(threads=1)
    tables = {"persons": received, "history": world.sources.ttp_history}
    checked = engine.query(steps_keys._received_sql(True), tables).to_pylist()
    engine.close()
    assert checked == [{"received": persons.height, "malformed": 0, "known_as_old": 0}]
    assert (report.persons_received, report.persons_pseudonymised, report.persons_unresolved) == (
        persons.height, full.table.height, 0)  # fmt: skip


def test_a_list_the_ttp_history_would_change_is_resolved_in_full(
    world: World, distributed_run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TTP's history is newer than the operator's: one person sent has a new number,
    another's has two successors. The check sees both, and full resolution follows: the
    first is pseudonymised under the new number, the second left unresolved."""
    received, _, _ = _ttp_files(distributed_run)
    sent = pl.read_parquet(received)[FNR].to_list()
    assert world.sources.ttp_history is not None
    history = pl.read_parquet(world.sources.ttp_history)
    known = set(history["old_id"].to_list()) | set(history["current_id"].to_list())
    fresh = [f for f in pl.read_parquet(world.path / "population.parquet")["person_id"].to_list()
             if f not in known and f not in sent][:3]  # fmt: skip
    moved, split = next(f for f in sent if f not in known), sent[-1]
    extra = pl.DataFrame({"old_id": [moved, split, split], "current_id": fresh,
                          "version": [1, 1, 1]})  # fmt: skip
    newer = tmp_path / "ttp_history.parquet"
    kept = history.select("old_id", "current_id", pl.col("version").cast(pl.Int64))
    pl.concat([kept, extra.with_columns(pl.col("version").cast(pl.Int64))]).write_parquet(newer)
    sources = dataclasses.replace(world.sources, ttp_history=newer)
    calls: list[int] = []
    full = pseudonymise_frame

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return full(*args, **kwargs)

    monkeypatch.setattr(steps_keys, "pseudonymise_frame", spy)
    result = world.run(world.distributed, tmp_path / "ws", sources=sources)
    assert calls == [1]  # the check sent the list to full validation and resolution
    _, made, report = _ttp_files(result)
    assert report.persons_unresolved == 1
    assert report.persons_received == len(sent)
    out = pl.read_parquet(made)
    column = names.pseudonym_column(PSEUDONYMOUS)
    keyset = _keys(world, result).ttp
    expected = pseudonymise_values(keyset, registry_domain(PSEUDONYMOUS), pl.Series([fresh[0]]))
    assert expected[0] in out[column].to_list()


# --- the operator's key list on the engine --------------------------------------------------


def test_the_key_list_is_assign_serials_scheme(world: World, distributed_run: RunResult) -> None:
    """The engine's key list is the one :func:`assign_serials` and the identity history's
    aliases give, row for row: keyed løpenummer, current identifiers in population order,
    then older ones by løpenummer and identifier."""
    store = distributed_run.workspace / party_dir("operator") / "store"
    got = pl.read_parquet(store / names.KEY_LIST)
    current = got.filter(pl.col("current"))[FNR]
    job_project = next(
        line.split('"')[1] for line in world.distributed.read_text().splitlines()
        if line.startswith("id = ")
    )  # fmt: skip
    keys = assign_serials(_keys(world, distributed_run).operator, job_project, current)
    keys = keys.rename({"lopenummer": SERIAL}).with_columns(pl.lit(True).alias("current"))
    assert world.sources.operator_history is not None
    history = IdentityHistory.read(world.sources.operator_history)
    aliases = history.aliases(keys[FNR]).join(
        keys.select(pl.col(FNR).alias("current"), SERIAL), on="current"
    )
    old = aliases.select(pl.col("old").alias(FNR), SERIAL, pl.lit(False).alias("current"))
    assert old.height > 0, "the demo's key list holds older identifiers"
    expected = pl.concat([keys, old.sort(SERIAL, FNR)])
    assert got.equals(expected)
    # what the operator sends: every identifier to a registry, the current ones to the TTP
    ttp_list, _, _ = _ttp_files(distributed_run)
    assert pl.read_parquet(ttp_list).equals(expected.filter(pl.col("current")).select(FNR, SERIAL))


def test_assign_serials_of_checked_identifiers_is_the_same_scheme(world: World) -> None:
    """The operator's step hands :func:`assign_serials` identifiers it has validated and
    deduplicated; unchecked again, they get the same løpenummer."""
    valid = pl.read_parquet(world.path / "population.parquet")["person_id"].alias(FNR)
    assert valid.len() > 1_000
    keyset = keyset_from_key(KEY)
    assert assign_serials(keyset, "P1", valid, checked=True).equals(
        assign_serials(keyset, "P1", valid)
    )


def test_the_ttp_check_sends_a_malformed_list_to_full_validation(
    duck: DuckDBEngine, tmp_path: Path
) -> None:
    """11 characters but not digits (the cipher refuses it), or not 11 characters (the
    check query): no engine output, so the step validates the list in full."""
    ctx: Any = SimpleNamespace(engine=duck, keys=SimpleNamespace(ttp=keyset_from_key(KEY)))
    out = tmp_path / "out.parquet"
    for bad in ("1510869508A", "1510869508"):
        received = tmp_path / "received.parquet"
        pl.DataFrame({FNR: ["15108695088", bad], SERIAL: [1, 2]}).write_parquet(received)
        assert steps_keys._pseudonymise_checked(ctx, received, None, "p", "npr", out) is None
        assert not out.exists() and list(tmp_path.iterdir()) == [received]
    pl.DataFrame({FNR: ["15108695088"], SERIAL: [1]}).write_parquet(received)
    assert steps_keys._pseudonymise_checked(ctx, received, None, "p", "npr", out) == (1, 1, 0)
    assert pl.read_parquet(out)["p"].to_list() == [KNOWN_ANSWERS[("npr", "fnr", "15108695088")]]


# --- the operator's person lists ------------------------------------------------------------


_DUCK = DuckDBEngine(threads=1)  # the send step's engine (closed with the process)


def _send(store: Path, registry: str, *, via_ttp: bool) -> dict[str, Any]:
    """The operator's send step for ``registry`` alone, on the key list in ``store``."""
    ctx: Any = SimpleNamespace(
        store=lambda party: store, route=lambda reg: SimpleNamespace(pseudonymous=via_ttp),
        engine=_DUCK,
    )  # fmt: skip
    step: Any = SimpleNamespace(
        party="operator", registry=registry, inputs=[names.KEY_LIST],
        outputs=[names.persons(registry)],
    )  # fmt: skip
    return steps_keys.send_persons_step(ctx, step).record()


def _key_list(store: Path, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 2_000
    fnr = pl.Series(rng.integers(10**9, 10**11, n)).cast(pl.String).str.zfill(11)
    keys = pl.DataFrame({FNR: fnr, SERIAL: rng.permutation(n) % 1_500 + 1,
                         "current": np.arange(n) < 1_500})  # fmt: skip
    keys.write_parquet(store / names.KEY_LIST)
    return keys


def test_the_same_person_list_is_written_once_and_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registries on the distributed route are sent the same list: the second and third
    are copies of the first one's bytes (no second Parquet writer), with the same counts;
    the TTP's list (current identifiers only) is its own."""
    keys = _key_list(tmp_path, 1)
    copies: list[Path] = []
    copy = shutil.copyfile

    def spy(source: Path, target: Path) -> Any:
        copies.append(target)
        return copy(source, target)

    monkeypatch.setattr(shutil, "copyfile", spy)
    stats = [_send(tmp_path, reg, via_ttp=False) for reg in ("npr", "dar", "kreftregisteret")]
    ttp = _send(tmp_path, PSEUDONYMOUS, via_ttp=True)
    assert len(copies) == 2
    first = (tmp_path / names.persons("npr")).read_bytes()
    for reg in ("dar", "kreftregisteret"):
        assert (tmp_path / names.persons(reg)).read_bytes() == first
    assert pl.read_parquet(tmp_path / names.persons("dar")).equals(keys.select(FNR, SERIAL))
    assert stats == [{"rows": 2_000, "persons": 1_500}] * 3
    sent = pl.read_parquet(tmp_path / names.persons(PSEUDONYMOUS))
    assert sent.equals(keys.filter(pl.col("current")).select(FNR, SERIAL))
    assert ttp == {"rows": 1_500, "persons": sent[SERIAL].n_unique()}


def test_a_changed_list_or_key_list_is_not_copied(tmp_path: Path) -> None:
    """A list changed since it was written, or a different key list, is never copied: the
    next list is made from the key list the step reads."""
    keys = _key_list(tmp_path, 2)
    _send(tmp_path, "npr", via_ttp=False)
    earlier = tmp_path / names.persons("npr")
    pl.DataFrame({FNR: ["00000000000"], SERIAL: [1]}).write_parquet(earlier)  # changed since
    _send(tmp_path, "dar", via_ttp=False)
    assert pl.read_parquet(tmp_path / names.persons("dar")).equals(keys.select(FNR, SERIAL))
    other = _key_list(tmp_path, 3)  # a new key list: its own list, not the earlier bytes
    assert _send(tmp_path, "kreftregisteret", via_ttp=False)["rows"] == 2_000
    got = pl.read_parquet(tmp_path / names.persons("kreftregisteret"))
    assert got.equals(other.select(FNR, SERIAL))
