"""What a run checks before it does anything: the population and every registry's source.

A run that fails at one of these checks has written nothing (no workspace, no keys, no audit
event), so the user fixes the job or the sources and runs the same command again. Without
them a misnamed column would stop the run midway (after the sealed ingest of a national
feed), and a pseudonymous registry given its raw fødselsnummer feed would join pseudonyms to
fødselsnummer, find nobody and deliver an empty file.

Checks read schemas and a sample of each key column, never a whole registry table.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from koble.errors import ColumnError, FileFormatError, UsageError
from koble.linkage.context import locate_population
from koble.linkage.job import Job
from koble.linkage.plan import Plan
from koble.linkage.scan import scan_pseudonyms
from koble.linkage.sources import RegistrySource, Sources, require_columns
from koble.registries.catalogue import Catalogue
from koble.registries.identifiers.check import refuse_reject_columns
from koble.registries.identifiers.scan import scan_frame
from koble.tables import read_table, require_column

__all__ = ["SAMPLE_ROWS", "check_pseudonym_column", "preflight"]

#: Rows of a registry's key column read to tell pseudonyms from fødselsnummer.
SAMPLE_ROWS = 10_000


def preflight(job: Job, job_path: Path, plan: Plan, catalogue: Catalogue, sources: Sources) -> None:
    """Raise an :class:`~koble.errors.InputError` (exit 2, naming the file and column) for
    the first input the run could not use: a population file that is missing, unreadable,
    empty or without the job's id column, a registry with no source, or a registry table
    (or feed) without the columns the run joins on."""
    population = locate_population(job_path, job.population_file, sources)
    frame = read_table(population)
    require_column(frame, job.id_column, population)
    refuse_reject_columns(frame.columns, population)  # its rejects file is written beside it
    if frame.height == 0:
        raise FileFormatError("the study population has no rows: nothing to link", path=population)
    if job.recovery is not None:  # the record fields the job says the population carries
        for column in job.recovery.fields.values():
            require_column(frame, column, population)
    for part in plan.accepted:  # every registry the plan asks for some years
        source = sources.get(part.registry)
        pseudonymous = part.route == "ttp-pseudonym"
        if source.ingest:
            require_columns(source.file, list(source.id_columns), "feed")
        else:
            require_columns(source.file, [source.id_column], "table")
            if pseudonymous:
                check_pseudonym_column(source)
    if job.recovers and plan.accepted:
        _check_register(sources)


def _check_register(sources: Sources) -> None:
    """Identity recovery needs the TTP's population register: named, with its files and
    columns (:meth:`koble.recovery.register.Register.open` reads no data)."""
    from koble.recovery.register import Register

    if sources.ttp_register is None:
        raise UsageError(
            "the job asks for identity recovery, but the sources name no population register "
            'for the TTP: add [ttp] register = "DIR" to the sources file (a synthetic '
            "world's is its folkeregister/ directory)"
        )
    Register.open(sources.ttp_register)


def check_pseudonym_column(source: RegistrySource) -> None:
    """A pseudonymous registry's own table must be keyed by its koble pseudonyms: the TTP
    route joins on them. A key column holding fødselsnummer (the feed before sealed ingest)
    or anything else is refused naming the file, the column and the likely remedy."""
    feed = pq.ParquetFile(source.file)
    batch = next(feed.iter_batches(batch_size=SAMPLE_ROWS, columns=[source.id_column]), None)
    if batch is None or batch.num_rows == 0:
        return  # an empty table: the registry finds nobody, which the extract reports
    sample = pl.DataFrame(batch)
    column = source.id_column
    if scan_pseudonyms(sample.select(pl.col(column).cast(pl.String))):
        return
    if scan_frame(sample, test_numbers=True):
        raise ColumnError(
            "the column holds fødselsnummer, but the registry is pseudonymous: the TTP route "
            "finds its persons by their pseudonyms, so this table would match nobody. A feed "
            "that still carries fødselsnummer is loaded by sealed ingest first: give it "
            "`ingest = true` in the sources file, with id_column naming its fødselsnummer "
            "column, which must be called fnr or end in _fnr (rename it if need be)",
            path=source.file,
            column=column,
        )
    raise ColumnError(
        "the registry is pseudonymous, but the column holds no koble pseudonyms "
        "(36 lower-case hex characters): name the registry's pseudonym column as id_column, "
        "or load a feed with fødselsnummer by `ingest = true`",
        path=source.file,
        column=column,
    )
