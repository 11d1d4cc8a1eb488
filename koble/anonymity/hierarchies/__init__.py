"""Generalisation hierarchies for quasi-identifiers (design §2.4).

Each hierarchy turns a column into a :class:`~koble.anonymity.generalisation.Generalisation`
(level-0 codes per row, per-level maps and labels), working on the column's distinct values
with vectorised polars expressions:

* :class:`AgeHierarchy`: age (or birth date) to top-coded age, 5-, 10-, 20-year bands, ``*``
* :class:`KommuneHierarchy`: kommune (any vintage 2016-2024) to fylke, health region or
  landsdel, ``Norge``, ``*``
* :class:`DateHierarchy`: day, month, quarter, year, multi-year period, ``*``
* :class:`Icd10Hierarchy`: ICD-10 code, category, WHO block, chapter, ``*``
* :class:`AtcHierarchy`: the five ATC levels, ``*``
* :class:`CategoricalHierarchy` / :func:`SexHierarchy`: value or ``*``
* :class:`CountHierarchy`: a count, count bands, any/none, ``*``
* :class:`CsvHierarchy`: any hierarchy in ARX's CSV format

:func:`hierarchy_for` builds one from its name in a config (``"age:bands=5,10,20;top=90"``).
A null is its own value, ``(missing)``, at every level below the top ``*``.
"""

from __future__ import annotations

from koble.anonymity.hierarchies.age import AgeHierarchy
from koble.anonymity.hierarchies.atc import AtcHierarchy
from koble.anonymity.hierarchies.base import MISSING, TOP
from koble.anonymity.hierarchies.counts import CountHierarchy
from koble.anonymity.hierarchies.csv import CsvHierarchy
from koble.anonymity.hierarchies.dates import DateHierarchy
from koble.anonymity.hierarchies.geography import KommuneHierarchy
from koble.anonymity.hierarchies.icd10 import Icd10Hierarchy
from koble.anonymity.hierarchies.registry import HIERARCHY_NAMES, hierarchy_for
from koble.anonymity.hierarchies.simple import CategoricalHierarchy, SexHierarchy

__all__ = [
    "HIERARCHY_NAMES",
    "MISSING",
    "TOP",
    "AgeHierarchy",
    "AtcHierarchy",
    "CategoricalHierarchy",
    "CountHierarchy",
    "CsvHierarchy",
    "DateHierarchy",
    "Icd10Hierarchy",
    "KommuneHierarchy",
    "SexHierarchy",
    "hierarchy_for",
]
