"""Line numbers for keys of a TOML file.

``tomllib`` gives none, so :class:`Lines` scans the text once and records the line of every
table header and every key (dotted keys included), skipping the insides of multi-line arrays
and inline tables; a key it cannot find falls back to its nearest written parent.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ATOM = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_ATOM}(?:\s*\.\s*{_ATOM})*)\s*=")
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _PART.findall(dotted))


class Lines:
    """Maps key paths to the line they are written on (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.where: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        depth = 0  # inside a multi-line array or inline table: keys there are values
        for number, line in enumerate(self.lines, start=1):
            if depth == 0:
                header = _HEADER.match(line)
                if header and "=" not in line.split("#")[0]:
                    table = _split(header.group(1))
                    self.where.setdefault(table, number)
                    continue
                key = _KEY.match(line)
                if key:
                    self.where.setdefault(table + _split(key.group(1)), number)
            code = re.sub(r"""("[^"]*"|'[^']*')""", "", line.split("#")[0])
            depth = max(0, depth + code.count("[") + code.count("{"))
            depth = max(0, depth - code.count("]") - code.count("}"))

    def line(self, *path: str) -> int:
        for cut in range(len(path), 0, -1):
            if path[:cut] in self.where:
                return self.where[path[:cut]]
        return 1

    def value(self, value: str, *path: str) -> int:
        """The line of a quoted ``value`` in the array at ``path`` (multi-line arrays)."""
        start = self.line(*path)
        for number in range(start, len(self.lines) + 1):
            text = self.lines[number - 1]
            if number > start and (_HEADER.match(text) or _KEY.match(text)):
                break
            if f'"{value}"' in text or f"'{value}'" in text:
                return number
        return start
