"""Refusing a command whose paths collide: :func:`ensure_distinct` one that names one file
twice (an output over another output or over an input), :func:`ensure_apart` one whose output
directory is, contains or lies inside another path it names.

A command checks the paths it was given with them, so a clash is a usage error (exit 2) naming
the two options rather than an input overwritten by the command's own output. Writing itself
is :mod:`koble.files`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from koble.errors import UsageError
from koble.files import shared_file

__all__ = ["ensure_apart", "ensure_distinct"]


def _identity(path: Path) -> tuple[Path, tuple[int, int] | None]:
    """A path's resolved form and, if it exists, its (device, inode): hard links, symlinks
    and ``..`` detours all meet in one of the two."""
    try:
        info = path.stat()
        inode: tuple[int, int] | None = (info.st_dev, info.st_ino)
    except OSError:
        inode = None
    return path.resolve(strict=False), inode


def ensure_distinct(
    outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None] | None = None
) -> None:
    """Refuse, with a :class:`UsageError` (exit 2) naming both options, a command that would
    write one of its ``outputs`` over another output or over one of its ``inputs``.

    Keys are how the user names each path (``"OUTPUT"``, ``"--rejects"``); ``None`` values
    are options not given. Paths are compared resolved and, where the file exists, by
    device and inode, so a hard link or symlink to an input is caught too. Inputs may name
    one file between them: reading a file twice loses nothing.
    """
    seen: list[tuple[str, Path, Path, tuple[int, int] | None]] = []
    for is_output, group in ((True, outputs), (False, inputs or {})):
        for name, given in group.items():
            if given is None:
                continue
            resolved, inode = _identity(Path(given))
            for other, other_path, other_resolved, other_inode in seen:
                if resolved == other_resolved or (inode is not None and inode == other_inode):
                    raise UsageError(
                        f"{other} and {name} name the same file; give them different paths",
                        path=other_path,
                    )
            if is_output:
                seen.append((name, Path(given), resolved, inode))


def ensure_apart(
    directories: Mapping[str, str | Path | None],
    others: Mapping[str, str | Path | None],
    *,
    may_hold: Collection[str] = (),
) -> None:
    """Refuse, with a :class:`UsageError` (exit 2) naming both options, a command whose
    output ``directories`` (a workspace) are, contain or lie inside one another or one of
    the ``others`` it names (input files and directories such as ``--against``, ``--keys``,
    ``--world``).

    :func:`ensure_distinct` compares files; a directory a command fills must also keep apart
    from what it reads or compares with: a workspace inside a delivery writes clear
    identifiers into the researcher's directory, one around it reads its own output. Paths
    are compared with symlinks resolved. ``may_hold`` names ``others`` that may lie inside
    an output directory (``koble run``'s keys, WORKSPACE/keys by default).
    """
    named = [(name, Path(given)) for name, given in directories.items() if given is not None]
    rest = [(name, Path(given)) for name, given in others.items() if given is not None]
    for index, (name, directory) in enumerate(named):
        home = shared_file(directory)
        for other, path in [*named[index + 1 :], *rest]:
            there = shared_file(path)
            if there == home:
                problem = f"{name} and {other} name the same directory"
            elif there.is_relative_to(home):
                if other in may_hold:
                    continue
                problem = f"{other} lies inside {name}"
            elif home.is_relative_to(there):
                problem = f"{name} lies inside {other}"
            else:
                continue
            raise UsageError(
                f"{problem}; give {name} a directory apart from the paths it reads", path=directory
            )
