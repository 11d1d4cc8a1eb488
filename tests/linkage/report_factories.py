"""Typed step reports with neutral figures, for tests of the checks that read them."""

from __future__ import annotations

from koble.linkage.reports import ExtractReport, PopulationCounts


def extract_report(**values: object) -> ExtractReport:
    """An extract report with neutral figures, ``values`` overriding (for the checks)."""
    base: dict[str, object] = dict(
        registry="npr", name="NPR", route="distributed", consent_filter=False,
        period=[2015, 2024], requested="npr", identity_model="fnr", persons_sent=0,
        persons_without_consent=0, rows_without_consent=0, persons_found=0,
        persons_delivered=0, source_file="npr.parquet", source_sha256="", source_rows=0,
        feed=None, rows_delivered=0, rows_outside_period=0, rows_found=None,
        reservation_filter=False, rows_withheld_reservation=0, values_nulled_reservation={},
        duplicate_rows=0, file="npr_extract.csv", file_sha256="", file_rows=0, variables=[],
        codebook={"files": []}, recipient="researcher",
    )  # fmt: skip
    return ExtractReport(**{**base, **values})  # type: ignore[arg-type]


def population_counts(**values: int) -> PopulationCounts:
    """Population counts with neutral figures, ``values`` overriding."""
    base = dict(rows=0, persons=0, invalid=0, duplicates=0, unresolved=0,
                resolved_from_history=0, recovered=0, old_identifiers_sent=0)  # fmt: skip
    figures = {**base, **values}
    return PopulationCounts(file="population.parquet", sha256="", reasons={}, **figures)  # type: ignore[arg-type]
