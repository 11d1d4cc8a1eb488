"""koble.files.directories_synced_at_end: a block's writes fsync each file before its
rename, as always, and each directory once, at the block's end (a run's step: issue 17
part 5, 189 fsyncs per national job), a failed block's too."""

from __future__ import annotations

from pathlib import Path

import pytest

from koble import files
from koble.errors import OutputError
from koble.files import (
    OutputSet,
    atomic_write,
    directories_synced_at_end,
    directory_syncs_owed_to,
    publish_directory,
    sync_directories,
    write_text,
)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """Every fsync koble.files does, in order: ("file" | "dir", path)."""
    calls: list[tuple[str, Path]] = []
    real = files._fsync

    def recording(path: Path, *, directory: bool = False) -> None:
        calls.append(("dir" if directory else "file", path))
        real(path, directory=directory)

    monkeypatch.setattr(files, "_fsync", recording)
    return calls


def test_outside_a_block_every_rename_syncs_its_directory(
    tmp_path: Path, synced: list[tuple[str, Path]]
) -> None:
    write_text(tmp_path / "a.json", "{}")
    write_text(tmp_path / "b.json", "{}")
    assert [kind for kind, _ in synced] == ["file", "dir", "file", "dir"]


def test_in_a_block_each_directory_is_synced_once_at_its_end(
    tmp_path: Path, synced: list[tuple[str, Path]]
) -> None:
    store, outbox = tmp_path / "store", tmp_path / "outbox"
    with directories_synced_at_end():
        for name in ("a", "b", "c"):
            write_text(store / f"{name}.json", name)
        with atomic_write(outbox / "t.koblt") as temp:
            temp.write_bytes(b"sealed")
        with OutputSet() as outputs:
            with outputs.file(store / "d.json") as temp:
                temp.write_text("d")
            outputs.remove(store / "a.json")
        assert [kind for kind, _ in synced] == ["file"] * 5  # every file before its rename
        assert (store / "d.json").read_text() == "d" and not (store / "a.json").exists()
    assert sorted(synced[5:]) == [("dir", outbox), ("dir", store)]  # together: any order


def test_a_failed_block_still_syncs_what_it_wrote(
    tmp_path: Path, synced: list[tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a failing block wrote may be meant to outlive it (a refused anonymity gate's
    report, which the error names): its directories are synced too, and an fsync that
    fails then gives way to the block's own error."""
    with pytest.raises(RuntimeError, match="the step failed"), directories_synced_at_end():
        write_text(tmp_path / "a.json", "{}")
        raise RuntimeError("the step failed")
    assert [kind for kind, _ in synced] == ["file", "dir"] and synced[1][1] == tmp_path

    def broken(path: Path, *, directory: bool = False) -> None:
        if directory:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "_fsync", broken)
    with pytest.raises(RuntimeError, match="the step failed"), directories_synced_at_end():
        write_text(tmp_path / "b.json", "{}")
        raise RuntimeError("the step failed")
    with pytest.raises(OutputError), directories_synced_at_end():
        write_text(tmp_path / "c.json", "{}")


def test_a_directory_gone_by_the_end_is_skipped(
    tmp_path: Path, synced: list[tuple[str, Path]]
) -> None:
    staging, final = tmp_path / "delivery.partial", tmp_path / "delivery"
    with directories_synced_at_end():
        write_text(staging / "a.csv", "a\n")
        write_text(tmp_path / "run.json", "{}")
        staging.rename(final)
    assert (final / "a.csv").read_text() == "a\n"
    assert sorted(synced[-2:]) == [("dir", tmp_path), ("dir", staging)]  # tried, gone: fine


def test_a_set_written_together_fsyncs_every_file_before_any_rename(
    tmp_path: Path, synced: list[tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OutputSet(together=True): no fsync as each body ends; all of the set's files at its
    commit, concurrently, and only then the renames (no final name before a whole file)."""
    names: list[list[str]] = []
    real = files._fsync

    def seeing(path: Path, *, directory: bool = False) -> None:
        names.append(sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")))
        real(path, directory=directory)

    monkeypatch.setattr(files, "_fsync", seeing)
    with OutputSet(together=True) as outputs:
        for name in ("a", "b", "c"):
            with outputs.file(tmp_path / f"{name}.bin") as temp:
                temp.write_bytes(name.encode())
        assert names == []  # nothing synced while the set is written
    assert len(names) == 3 + 3  # three files, then each rename's directory
    assert all(seen == [] for seen in names[:3])  # every file synced before any rename
    assert [(tmp_path / f"{n}.bin").read_bytes() for n in "abc"] == [b"a", b"b", b"c"]


def test_a_set_written_together_whose_fsync_fails_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, *, directory: bool = False) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_fsync", broken)
    with pytest.raises(OutputError, match="no space left"), OutputSet(together=True) as outputs:
        for name in ("a", "b"):
            with outputs.file(tmp_path / f"{name}.bin") as temp:
                temp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []  # no final name, no temporary file


def test_owed_directories_wait_for_the_caller(
    tmp_path: Path, synced: list[tuple[str, Path]]
) -> None:
    """directory_syncs_owed_to: the file is synced before its rename, its directory only
    when the caller calls sync_directories (a run's run.json: at the run's end)."""
    owed: set[Path] = set()
    for _ in range(3):
        with directory_syncs_owed_to(owed):
            write_text(tmp_path / "run.json", "{}")
    assert [kind for kind, _ in synced] == ["file"] * 3
    assert owed == {tmp_path}
    sync_directories(owed)
    assert synced[3:] == [("dir", tmp_path)]


def test_publishing_a_directory_syncs_every_file_then_the_directories(
    tmp_path: Path, synced: list[tuple[str, Path]]
) -> None:
    staging, final = tmp_path / "staging", tmp_path / "delivery"
    staging.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (staging / name).write_text(name)
    publish_directory(staging, final)
    assert sorted(synced[:3]) == [("file", staging / n) for n in ("a.csv", "b.csv", "c.csv")]
    assert synced[3:] == [("dir", staging), ("dir", tmp_path)]
    assert sorted(p.name for p in final.iterdir()) == ["a.csv", "b.csv", "c.csv"]


def test_a_write_after_another_is_renamed_only_once_the_other_returned(tmp_path: Path) -> None:
    """write_bytes_after: ``first`` runs while the file is written and fsynced; the name
    appears only after ``first`` returned, and not at all if it raised."""
    target = tmp_path / "run.json"
    seen: list[bool] = []
    files.write_bytes_after(target, b"new", lambda: seen.append(target.exists()))
    assert seen == [False] and target.read_bytes() == b"new"

    def refused() -> None:
        raise RuntimeError("the audit log refused the event")

    with pytest.raises(RuntimeError, match="refused"):
        files.write_bytes_after(target, b"newer", refused)
    assert target.read_bytes() == b"new"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file
