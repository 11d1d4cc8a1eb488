"""Issue 12 §2: every file koble writes appears whole or not at all (koble.files.atomic_write,
OutputSet), and an environment that refuses a write (disk full, size limit, no directory)
is a clear exit 2 naming the path, never "internal error"."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import KobleGroup
from koble.errors import OutputError, UsageError
from koble.files import (
    TEMP_MARK,
    OutputSet,
    atomic_write,
    os_failure,
    write_bytes,
    write_text,
)
from koble.path_checks import ensure_distinct
from koble.tables import write_table

PYTHON = sys.executable


def leftovers(directory: Path) -> list[str]:
    """Temporary files koble left in ``directory`` (hidden, with .tmp in the name)."""
    return sorted(p.name for p in directory.rglob("*") if TEMP_MARK in p.name)


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    write_table(pl.DataFrame({"a": [1, 2, 3]}), target)
    before = target.read_bytes()

    class WriterError(Exception):
        pass

    with pytest.raises(WriterError), atomic_write(target) as temp:
        temp.write_bytes(b"PAR1 half a file")
        raise WriterError
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_write_table_failing_midway_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.csv"
    target.write_text("a\n1\n")

    def half(self: pl.DataFrame, file: str | Path, **_: object) -> None:
        Path(file).write_text("a\n")  # the first bytes, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_csv", half)
    with pytest.raises(OutputError) as info:
        write_table(pl.DataFrame({"a": [5, 6]}), target)
    assert str(info.value) == f"{target}: cannot write: no space left on device"
    assert target.read_text() == "a\n1\n"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES])
def test_an_os_error_at_the_rename_is_an_output_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(*_: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match=os.strerror(code)[1:]):
        write_text(tmp_path / "x.json", "{}")
    assert not (tmp_path / "x.json").exists() and leftovers(tmp_path) == []


def test_missing_directories_are_created_and_a_file_in_the_way_is_exit_2(tmp_path: Path) -> None:
    assert write_text(tmp_path / "a" / "b" / "c.txt", "x").read_text() == "x"
    (tmp_path / "plain").write_text("")
    with pytest.raises(OutputError, match="cannot write: not a directory"):
        write_text(tmp_path / "plain" / "c.txt", "x")


def test_modes_follow_the_umask_or_are_exact_for_keys(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        plain = write_text(tmp_path / "plain.txt", "x")
        key = write_bytes(tmp_path / "key.pem", b"k", mode=0o600)
    finally:
        os.umask(old)
    assert plain.stat().st_mode & 0o777 == 0o640
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_symlinked_output_replaces_the_link_and_never_writes_its_target(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "out.txt"
    link.symlink_to(target)
    write_text(link, "new")
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "new"


def test_exclusive_refuses_an_existing_file_atomically(tmp_path: Path) -> None:
    key = write_bytes(tmp_path / "k.pem", b"first", exclusive=True)
    with pytest.raises(UsageError, match="exists already"):
        write_bytes(key, b"second", exclusive=True)
    assert key.read_bytes() == b"first" and leftovers(tmp_path) == []


def test_an_output_set_appears_together_or_not_at_all(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(RuntimeError), OutputSet() as outputs:
        with outputs.file(a) as temp:
            temp.write_text("a")
        with outputs.file(b) as temp:
            temp.write_text("b")
        raise RuntimeError("killed between outputs")
    assert not a.exists() and not b.exists() and leftovers(tmp_path) == []
    order: list[str] = []
    real = os.replace

    def record(src: str | Path, dst: str | Path) -> None:
        order.append(Path(dst).name)
        real(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", record)
        with OutputSet() as outputs:
            with outputs.file(a, last=True) as temp:
                temp.write_text("a")
            with outputs.file(b) as temp:
                temp.write_text("b")
            assert not a.exists() and outputs.current(a).read_text() == "a"
    assert order == ["b.txt", "a.txt"] and a.read_text() == "a" and b.read_text() == "b"


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=4096), st.binary(max_size=4096), st.booleans())
def test_the_file_is_always_old_or_new_never_between(
    tmp_path_factory: pytest.TempPathFactory, old: bytes, new: bytes, fail: bool
) -> None:
    directory = tmp_path_factory.mktemp("prop")
    target = write_bytes(directory / "f.bin", old)
    try:
        with atomic_write(target) as temp, temp.open("wb") as handle:
            handle.write(new[: len(new) // 2])
            if fail:
                raise ValueError("writer died")
            handle.write(new[len(new) // 2 :])
    except ValueError:
        pass
    assert target.read_bytes() == (old if fail else new)
    assert leftovers(directory) == []


KILLED_WRITER = """
import os, signal, sys
import polars as pl
from koble.tables import write_table

def half_then_killed(self, file, **kwargs):
    with open(file, "wb") as handle:
        handle.write(b"PAR1" + b"x" * 100_000)
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

pl.DataFrame.write_parquet = half_then_killed
write_table(pl.DataFrame({"a": list(range(10))}), sys.argv[1])
"""


def test_sigkill_while_writing_leaves_the_final_name_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    write_table(pl.DataFrame({"a": [1]}), target)
    before = target.read_bytes()
    done = subprocess.run([PYTHON, "-c", KILLED_WRITER, str(target)], check=False)
    assert done.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    assert pl.read_parquet(target)["a"].to_list() == [1]
    fresh = tmp_path / "fresh.parquet"
    subprocess.run([PYTHON, "-c", KILLED_WRITER, str(fresh)], check=False)
    assert not fresh.exists()  # a kill leaves at most a hidden temporary, never the name


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_size_limit_is_exit_2_naming_the_file(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / "cohort.parquet"
    pl.DataFrame({"fnr": [f"not a number {i:08d}" for i in range(20_000)]}).write_parquet(source)
    out = tmp_path / f"rejects{suffix}"
    script = textwrap.dedent(
        f"""
        import sys
        from koble.cli.main import main
        sys.argv = ["koble", "ids", "check", {str(source)!r}, "--column", "fnr",
                    "--rejects", {str(out)!r}]
        main()
        """
    )
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True,
                          preexec_fn=_limit_file_size, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"koble: error: {out}: cannot write: file too large"
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "/data/out.parquet"),
        pl.exceptions.ComputeError(
            "parquet: underlying IO error: Read-only file system (os error 30)"
        ),
        OSError(27, "Error writing bytes to file. Detail: [errno 27] File too large"),
    ],
)
def test_the_cli_maps_stray_os_errors_to_exit_2(error: Exception) -> None:
    @click.group(cls=KobleGroup)
    def group() -> None:
        pass

    @group.command()
    def write() -> None:
        raise error

    result = CliRunner().invoke(group, ["write"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("koble: error: ") and "internal error" not in line
    assert line.removeprefix("koble: error: ").split(":")[0] == os_failure(error)
    assert "\n" not in line


def test_os_failure_reads_errnos_only() -> None:
    assert os_failure(OSError(errno.ENOSPC, "whatever 25124940411")) == "no space left on device"
    assert os_failure(ValueError("nothing to do with the OS")) is None
    duck = 'IO Error: {"exception_message":"Could not write file","errno":"28"}'
    assert os_failure(RuntimeError(duck)) == "no space left on device"
    assert "25124940411" not in (os_failure(OSError("disk 25124940411 gone")) or "")


def test_ensure_distinct_catches_links_and_detours(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("a\n1\n")
    (tmp_path / "hard.csv").hardlink_to(source)
    (tmp_path / "soft.csv").symlink_to(source)
    for same in ("in.csv", "hard.csv", "soft.csv", "sub/../in.csv"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(UsageError, match="OUTPUT and SOURCE name the same file"):
            ensure_distinct({"OUTPUT": tmp_path / same}, {"SOURCE": source})
    with pytest.raises(UsageError, match="OUTPUT and --rejects name the same file"):
        ensure_distinct({"OUTPUT": tmp_path / "o.csv", "--rejects": tmp_path / "o.csv"})
    ensure_distinct({"OUTPUT": tmp_path / "o.csv", "--rejects": None},
                    {"SOURCE": source, "--population": source})  # fmt: skip


def test_a_published_directory_is_synced_before_it_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The researcher's delivery directory is renamed into place only after every file in
    it and the directory itself are on disk (before: copied files were renamed unsynced)."""
    from koble import files
    from koble.linkage import steps_deliver

    assert vars(steps_deliver)["publish_directory"] is files.publish_directory  # used by receive
    staging, final = tmp_path / "delivery.partial", tmp_path / "delivery"
    staging.mkdir()
    for name in ("a.csv", "manifest.json"):
        (staging / name).write_text(name)
    events: list[str] = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(fd: int) -> None:
        events.append("sync " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    def rename(self: Path, target: Path) -> Path:  # type: ignore[override]
        events.append("rename")
        return real_rename(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    files.publish_directory(staging, final)
    assert events[:4] == ["sync a.csv", "sync manifest.json", "sync delivery.partial", "rename"]
    assert events[4] == f"sync {tmp_path.name}"
    assert sorted(p.name for p in final.iterdir()) == ["a.csv", "manifest.json"]
    with pytest.raises(OutputError, match="cannot write"):
        files.publish_directory(tmp_path / "missing", tmp_path / "other")
