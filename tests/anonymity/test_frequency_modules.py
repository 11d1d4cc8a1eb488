"""``koble.anonymity.frequency`` split by what each part owns: the table and lookups
(``frequency_table``), the keys and grouping (``frequency_keys``), the cache of evaluated
tables (``table_cache``). Every name imported from ``frequency`` before is still there, and
is the same object as in the module that now owns it."""

from __future__ import annotations

import koble.anonymity.frequency as frequency
import koble.anonymity.frequency_keys as keys
import koble.anonymity.frequency_table as table
import koble.anonymity.table_cache as cache

BEFORE = (
    "FrequencyTable", "Int64s", "Lookups", "TableCache", "aggregate", "base_table",
    "build_table", "class_keys", "entry_keys", "locate", "roll_up", "base_rows",
)  # fmt: skip


def test_every_name_is_still_importable_from_frequency() -> None:
    assert set(BEFORE) <= set(frequency.__all__)
    for name in frequency.__all__:
        assert hasattr(frequency, name), name


def test_the_names_are_the_owners_objects() -> None:
    assert frequency.FrequencyTable is table.FrequencyTable
    assert frequency.Lookups is table.Lookups
    assert frequency.Int64s is table.Int64s
    assert frequency.TableCache is cache.TableCache
    assert frequency.aggregate is keys.aggregate


def test_each_module_is_small() -> None:
    for module in (frequency, keys, table, cache):
        assert module.__file__ is not None
        with open(module.__file__, encoding="utf-8") as text:
            assert sum(1 for _ in text) <= 250, module.__name__
