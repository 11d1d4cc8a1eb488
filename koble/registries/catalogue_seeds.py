"""The seed texts the bundled registry catalogue quotes, and how they are searched.

The catalogue's provenance is checkable anywhere koble is installed: a verbatim copy of each
seed ships in ``koble/registries/data/catalogue/seeds/`` (one TOML file each, with the SHA-256
of the original file), and every quote in the bundled catalogue must occur in its seed.

Quotes are compared after :func:`normalise`, which folds every run of whitespace (including
the no-break spaces the web pages are full of) into one space, so a quote can be copied across
a line break.

Seed 003 (helsedata.no, "Datakilder") is a list: each data source starts on a line that begins
with exactly one space and a bullet (``" • "``); the bullets inside an entry are indented
further, the filter menu above the list uses the same marker but comes before the
"N datakilder" header, and the alphabet index between entries is a line holding one letter or
digit. :func:`list_entries` splits it on that structure.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

__all__ = ["ListEntry", "Seed", "bundled_seeds", "list_entries", "normalise"]

_SEED_PACKAGE = "koble.registries.data.catalogue.seeds"
_ENTRY = re.compile(r"^ • (?P<heading>\S.*)$")
_HEADER = re.compile(r"^(?P<count>\d+) datakilder$")
_INDEX = re.compile(r"^[A-ZÆØÅ0-9]$")


def normalise(text: str) -> str:
    """Fold every run of whitespace (no-break spaces too) into one space and strip the ends."""
    return " ".join(text.split())


class _Searchable:
    """A text that quotes are looked up in, whitespace-normalised on both sides."""

    text: str

    @cached_property
    def normalised(self) -> str:
        return normalise(self.text)

    def contains(self, quote: str) -> bool:
        """Whether ``quote`` occurs in the text, whitespace-normalised on both sides."""
        needle = normalise(quote)
        return bool(needle) and needle in self.normalised


@dataclass(frozen=True)
class Seed(_Searchable):
    """One seed text: its file name, a title, the original file's SHA-256 and the text."""

    name: str
    title: str
    sha256: str
    text: str


@dataclass(frozen=True)
class ListEntry(_Searchable):
    """One top-level entry of a list seed: its heading line, the index letter above it, the
    1-based line number of the heading and the entry's whole text (heading included)."""

    heading: str
    index: str
    line: int
    text: str


@cache
def bundled_seeds() -> dict[str, Seed]:
    """The shipped seed copies by file name (``"003_b1715e3ea426f77a.txt"``)."""
    seeds: dict[str, Seed] = {}
    for item in sorted(resources.files(_SEED_PACKAGE).iterdir(), key=lambda i: i.name):
        if not item.name.endswith(".toml"):
            continue
        data = tomllib.loads(item.read_text(encoding="utf-8"))
        seed = Seed(str(data["name"]), str(data["title"]), str(data["sha256"]), str(data["text"]))
        seeds[seed.name] = seed
    return seeds


def list_entries(text: str) -> tuple[int | None, list[ListEntry]]:
    """Split a list page such as seed 003 into its entries.

    Returns the count the page announces ("98 datakilder", ``None`` when absent) and the
    entries below that header, in order. An entry runs from its heading line up to the next
    heading or index line.
    """
    lines = text.split("\n")
    announced: int | None = None
    start = 0
    for number, line in enumerate(lines):
        header = _HEADER.match(line.strip())
        if header:
            announced, start = int(header["count"]), number + 1
            break
    entries: list[ListEntry] = []
    index = ""
    current: tuple[str, int] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            entries.append(ListEntry(current[0], index, current[1], "\n".join(body)))

    for number in range(start, len(lines)):
        line = lines[number]
        heading = _ENTRY.match(line)
        if heading or _INDEX.match(line):
            close()
            current, body = None, []
        if heading:
            current, body = (heading["heading"].strip(), number + 1), [line]
        elif _INDEX.match(line):
            index = line
        elif current is not None:
            body.append(line)
    close()
    return announced, entries
