"""``generate_world``: build every table of the synthetic registry world and the manifest.

Order of work: persons and identities (in memory, a few hundred MB at national scale), the
small tables (history, institutions, cohort, abortions), then one pass over person chunks
that streams every person-keyed table to its own Parquet file. Each (table, chunk) has its
own random stream, so output depends on the config alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from koble.synth import (
    abort,
    cohort,
    feeds,
    health,
    helsearkiv,
    mfr,
    npr,
    persons,
    register,
    reservations,
    ssb,
)
from koble.synth.config import SynthConfig
from koble.synth.context import World
from koble.synth.dates import NEVER, day
from koble.synth.identities import CHANGES, identities
from koble.synth.institutions import pools
from koble.synth.names import PersonNames, person_names
from koble.synth.output import TableWriter, write_manifest
from koble.synth.population import demography
from koble.synth.registries import write_registries

__all__ = ["GENERATOR_VERSION", "Progress", "generate_world"]

GENERATOR_VERSION = "koble-synth/1"
#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]

_CHUNKED = {
    "population.parquet": persons.POPULATION,
    "population_67.parquet": persons.ELDERLY,
    "npr.parquet": npr.SCHEMA,
    "dar.parquet": health.DAR_SCHEMA,
    "mfr.parquet": mfr.SCHEMA,
    "kreftregisteret.parquet": health.CANCER_SCHEMA,
    "quality_registry.parquet": health.QUALITY_SCHEMA,
    "ssb_education.parquet": ssb.EDUCATION_SCHEMA,
    "ssb_income.parquet": ssb.INCOME_SCHEMA,
    "feeds/reseptregisteret.parquet": feeds.RESEPT_SCHEMA,
    "feeds/iplos.parquet": feeds.IPLOS_SCHEMA,
    # the registries that hold other years: identity models change over time
    "npr_deidentified.parquet": npr.DEIDENTIFIED_SCHEMA,
    "legemiddelregisteret.parquet": feeds.LEGEMIDDEL_SCHEMA,
    "kpr.parquet": feeds.IPLOS_SCHEMA,
}


def _noop(stage: str, done: int, total: int) -> None:
    del stage, done, total


def _write_one(out: Path, relpath: str, schema: Any, columns: Any) -> dict[str, Any]:
    writer = TableWriter(out, relpath, schema)
    writer.write(columns)
    return writer.close()


def _register_truth(names: PersonNames, addresses: int) -> dict[str, Any]:
    events = np.bincount(names.event, minlength=3)
    return {
        "born_abroad": int((names.country >= 0).sum()),
        "marriages": int(events[1]),
        "name_changes": int(events[2]),
        "double_first_names": int((names.first2 >= 0).sum()),
        "middle_names": int((names.middle_now >= 0).sum()),
        "hyphenated_surnames": int((names.last2_now >= 0).sum()),
        "names_rows": len(names.event) + int(events[1:].sum()),
        "addresses_rows": addresses,
    }


def _truth(world: World, cohort_truth: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    ids, d = world.ids, world.demo
    kinds = np.bincount(d.kind, minlength=3)
    return more | {
        "cohort": cohort_truth,
        "persons": d.size,
        "persons_dead": int((d.death != NEVER).sum()),
        "persons_by_kind": {"fnr": int(kinds[0]), "dnr": int(kinds[1]), "hnr": int(kinds[2])},
        "persons_2032_rule": int(ids.rule2032.sum()),
        "persons_with_history": len(ids.person),
        "history_rows": len(ids.person) + int(ids.chain.sum()),
        "history_by_change": {
            name: int((ids.change == i).sum()) + (int(ids.chain.sum()) if i == 2 else 0)
            for i, name in enumerate(CHANGES)
        },
        "persons_with_two_changes": int(ids.chain.sum()),
    }


def generate_world(
    out_dir: Path, config: SynthConfig, progress: Progress | None = None
) -> dict[str, Any]:
    """Write the synthetic world for ``config`` into ``out_dir``; return the manifest.

    ``out_dir`` is created if needed; files of an earlier world there are overwritten. Each
    file appears whole (written under a temporary name, then renamed), then registries.toml
    (which table holds which registry), and manifest.json last: a world without one is
    incomplete (an earlier world's is removed first).
    """
    report = progress or _noop
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    shutil.rmtree(out / "feeds", ignore_errors=True)
    shutil.rmtree(out / "reservations", ignore_errors=True)
    shutil.rmtree(out / register.DIRECTORY, ignore_errors=True)
    shutil.rmtree(out / "truth", ignore_errors=True)
    n = config.persons
    n_chunks = -(-n // config.chunk_size)
    report("persons", 0, 1)
    demo = demography(config)
    world = World(cfg=config, demo=demo, ids=identities(config, demo), pools=pools(config))
    names = person_names(world)  # the register's names, on streams of their own
    report("persons", 1, 1)
    history = persons.history(world)
    registered = f"{register.DIRECTORY}/identity_history.parquet"  # the same rows, the TTP's
    files = [
        _write_one(out, "identity_history.parquet", persons.HISTORY, history),
        _write_one(out, registered, persons.HISTORY, history),
        _write_one(out, "institutions.parquet", persons.INSTITUTIONS, persons.institutions(world)),
        _write_one(out, "abortregisteret.parquet", abort.SCHEMA, abort.abortions(world)),
    ]
    cohort_cols, cohort_truth, cohort_rows = cohort.cohort(world, names)
    files.append(_write_one(out, "cohort.parquet", cohort.SCHEMA, cohort_cols))
    files.append(_write_one(out, "truth/cohort.parquet", cohort.TRUTH, cohort_rows))
    journals, journal_truth, journal_counts = helsearkiv.journals(world, names)
    files.append(_write_one(out, "helsearkiv.parquet", helsearkiv.SCHEMA, journals))
    files.append(_write_one(out, "truth/helsearkiv.parquet", helsearkiv.TRUTH, journal_truth))
    del journals, journal_truth
    held = {
        part: TableWriter(out, f"{register.DIRECTORY}/{part}.parquet", schema)
        for part, schema in (
            ("persons", register.PERSONS), ("names", register.NAMES),
            ("addresses", register.ADDRESSES),
        )
    }  # fmt: skip
    writers = {path: TableWriter(out, path, schema) for path, schema in _CHUNKED.items()}
    opted = {
        table: TableWriter(out, reservations.path_of(table), reservations.SCHEMA)
        for table in reservations.OPT_OUTS
    }
    mothers = mfr.mothers_index(world)
    for c in range(n_chunks):
        report("registries", c, n_chunks)
        lo, hi = c * config.chunk_size, min((c + 1) * config.chunk_size, n)
        writers["population.parquet"].write(persons.population(world, lo, hi))
        for part, rows in register.chunk(world, names, lo, hi, c).items():
            held[part].write(rows)  # the TTP's population register, in population order
        writers["population_67.parquet"].write(persons.elderly(world, lo, hi))
        first = writers["npr.parquet"].rows + 1
        writers["npr.parquet"].write(npr.episodes(world, lo, hi, c, first))
        writers["dar.parquet"].write(health.deaths(world, lo, hi, c))
        keyed = {  # each registry's rows of the chunk, by the column it is keyed by
            "mfr": (mfr.births(world, lo, hi, c, mothers), "mother_fnr"),
            "kreftregisteret": (health.cancers(world, lo, hi, c), "fnr"),
            "quality_registry": (health.hip_fractures(world, lo, hi, c), "fnr"),
        }
        for table, (rows, _) in keyed.items():
            writers[f"{table}.parquet"].write(rows)
        edu, inc = ssb.education_and_income(world, lo, hi, c)
        writers["ssb_education.parquet"].write(edu)
        writers["ssb_income.parquet"].write(inc)
        writers["feeds/reseptregisteret.parquet"].write(feeds.dispensings(world, lo, hi, c))
        writers["npr_deidentified.parquet"].write(npr.deidentified(world, lo, hi, c))
        writers["legemiddelregisteret.parquet"].write(feeds.prescriptions(world, lo, hi, c))
        services = feeds.services(world, lo, hi, c)
        iplos, kpr = feeds.split_at(services, "start_date", day(config.kpr_start))
        writers["feeds/iplos.parquet"].write(iplos)  # IPLOS's reporting years to 2017
        writers["kpr.parquet"].write(kpr)  # KPR from 2018: every service once, in one of them
        keyed["kpr"] = (kpr, "fnr")  # persons with KPR rows opt out most
        for table, (rows, column) in keyed.items():  # who opted out of what, with truth
            opted[table].write(reservations.opt_outs(world, table, rows[column], lo, hi, c))
    report("registries", n_chunks, n_chunks)
    files.extend(w.close() for w in writers.values())
    files.extend(w.close() for w in opted.values())
    more = {
        "helsearkiv": journal_counts,
        "register": _register_truth(names, held["addresses"].rows),
    }
    files.extend(w.close() for w in held.values())
    manifest: dict[str, Any] = {
        "generator": GENERATOR_VERSION,
        "seed": config.seed,
        "reference_date": config.reference_date.isoformat(),
        "config": config.to_dict(),
        "files": sorted(files, key=lambda f: f["path"]),
        "truth": _truth(world, cohort_truth, more),
        "notes": {
            "icd10": "dotted form (J18.9); three-character categories undotted (I10, C61)",
            "identity_history": "valid_from..valid_to inclusive; successor in use from valid_to+1",
            "ids": "11-character strings, leading zeros kept; orgnr 9, HPR 7 characters",
        },
    }
    write_registries(out)  # which table holds which registry (koble.synth.registries)
    write_manifest(out / "manifest.json", manifest)
    return manifest
