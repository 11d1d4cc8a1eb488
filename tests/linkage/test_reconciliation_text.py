"""The reconciliation's figures read like the tables beside them: thousands separated."""

from __future__ import annotations

from koble.linkage.steps_deliver import _checks
from tests.linkage.report_factories import extract_report, population_counts


def test_reconciliation_details_have_thousands_separators() -> None:
    population = population_counts(rows=44_751, persons=44_700, invalid=40, duplicates=10,
                                   unresolved=1)  # fmt: skip
    registries = [extract_report(registry="npr", persons_sent=44_700, persons_found=12_345,
                                 rows_delivered=56_789, file_rows=56_789)]  # fmt: skip
    details = [c.detail for c in _checks(population, registries, {})]
    assert details[0] == "44,751 = 44,700 + 51"
    assert "56,789 = 56,789" in details and "12,345 ≤ 44,700" in details
    assert not any(d for d in details if "44751" in d or "56789" in d)
