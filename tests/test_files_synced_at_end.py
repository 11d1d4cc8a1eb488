"""koble.files.directories_synced_at_end: a block's writes fsync each file before its
rename, as always, and each directory once, at the block's end (a run's step: issue 17
part 5, 189 fsyncs per national job), a failed block's too."""

from __future__ import annotations

from pathlib import Path

import pytest

from koble import files
from koble.errors import OutputError
from koble.files import OutputSet, atomic_write, directories_synced_at_end, write_text


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
    assert synced[5:] == [("dir", outbox), ("dir", store)]


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
    assert synced[-2:] == [("dir", tmp_path), ("dir", staging)]  # tried, gone: no error
