"""The reader a job file is validated with (:mod:`koble.linkage.job`,
:mod:`koble.linkage.job_requests`): it collects every problem, each at its line, instead of
stopping at the first, and reads tables, strings and key sets with the same messages
everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from koble.linkage.job_model import Problem
from koble.linkage.toml_lines import Lines
from koble.registries.catalogue import Catalogue

__all__ = ["JobReader"]


class JobReader:
    """One job file being read: its text's key lines (:class:`Lines`), the catalogue its
    registries are looked up in, and every problem found so far, each with its line.

    Validation goes on past a problem so that one :class:`~koble.linkage.job_model.JobError`
    lists them all; ``present`` holds the top-level tables found, so a missing table is
    reported once rather than once per key it should hold.
    """

    def __init__(self, text: str, path: str | None, catalogue: Catalogue) -> None:
        self.at = Lines(text)
        self.path = path
        self.catalogue = catalogue
        self.problems: list[Problem] = []
        self.present: set[str] = set()

    def problem(self, line: int, message: str) -> None:
        """Record a problem at ``line``; reading goes on."""
        self.problems.append(Problem(line, message))

    def table(self, data: Mapping[str, Any], name: str, *, required: bool) -> Mapping[str, Any]:
        """The table ``name`` of ``data`` (empty if missing, after a problem if ``required``,
        or if it is not a table); a table found is remembered in ``present``."""
        value = data.get(name)
        if value is not None:
            self.present.add(name)
        if value is None:
            if required:
                self.problem(1, f"missing table [{name}]")
            return {}
        if not isinstance(value, Mapping):
            self.problem(self.at.line(name), f"{name!r} must be a table")
            return {}
        return value

    def text(self, table: Mapping[str, Any], *path: str) -> str:
        """A required string; a missing table is reported once, not once per key."""
        if path[0] not in self.present:
            return ""
        value = table.get(path[-1])
        if value is None:
            self.problem(self.at.line(*path), f"missing {'.'.join(path)}")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(self.at.line(*path), f"{'.'.join(path)} must be a non-empty string")
            return ""
        return value.strip()

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], *path: str) -> None:
        """A problem for every key of ``table`` (at ``path``) not in ``allowed``: a misspelt
        key would otherwise be ignored silently."""
        for key in sorted(set(table) - allowed):
            where = ".".join((*path, key)) if path else key
            self.problem(
                self.at.line(*path, key),
                f"unknown key {where!r}; use {', '.join(sorted(allowed))}",
            )
