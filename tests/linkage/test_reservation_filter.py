"""The reservation filter's parts: the opt-out table, the withholding, the route modifier."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import ColumnError, FileFormatError, InputError
from koble.linkage.plan import SERIAL
from koble.linkage.reservation import read_opt_outs, withhold, withhold_at_registry
from koble.linkage.routes import JOB_PURPOSES, route_for
from koble.linkage.sources import load_sources
from koble.registries.catalogue import Catalogue
from koble.registries.catalogue_model import RESERVATION_PURPOSES, Reservation

FNR = "01017012345"  # shaped like a fødselsnummer: must never be echoed


def _opt_outs(rows: list[tuple[str, str, list[str], str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "person": pl.String,
            "scope": pl.String,
            "variables": pl.List(pl.String),
            "purpose": pl.String,
        },
        orient="row",
    )


# --- the withholding, as a property over random opt-outs ------------------------------------

_VARIABLES = ("a", "b", "x")  # x is not in the extract: an opt-out of it withholds nothing


@st.composite
def _cases(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    n = draw(st.integers(1, 12))
    old = draw(st.sets(st.integers(1, n)))  # persons also sent under an older number
    persons = [(f"k{i}", i) for i in range(1, n + 1)] + [(f"o{i}", i) for i in sorted(old)]
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(1, n),
                st.one_of(st.none(), st.integers(0, 3)),
                st.one_of(st.none(), st.sampled_from(["p", "q"])),
            ),
            max_size=40,
        )
    )
    keys = [k for k, _ in persons] + ["z1", "z2"]  # z: opted out, never sent
    opt = draw(
        st.lists(
            st.tuples(
                st.sampled_from(keys),
                st.sampled_from(["persons", "variables"]),
                st.lists(st.sampled_from(_VARIABLES), min_size=1, max_size=3, unique=True),
                st.sampled_from(RESERVATION_PURPOSES),
            ),
            max_size=15,
        )
    )
    opt_rows = [(p, s, v if s == "variables" else [], u) for p, s, v, u in opt]
    extract = pl.DataFrame(
        rows, schema={SERIAL: pl.Int64, "a": pl.Int64, "b": pl.String}, orient="row"
    )
    sent = pl.DataFrame(persons, schema={"fnr": pl.String, SERIAL: pl.Int64}, orient="row")
    return extract, sent, _opt_outs(opt_rows)


@settings(max_examples=200, deadline=None)
@given(_cases())
def test_withhold_drops_opted_out_persons_and_nulls_opted_out_variables(
    case: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    extract, sent, opt_outs = case
    serial_of = dict(zip(sent["fnr"], sent[SERIAL], strict=True))
    gone: set[int] = set()
    nulled: dict[str, set[int]] = {"a": set(), "b": set()}
    for person, scope, variables, purpose in opt_outs.iter_rows():
        if purpose not in JOB_PURPOSES or person not in serial_of:
            continue
        if scope == "persons":
            gone.add(serial_of[person])
        for v in variables:
            if v in nulled:
                nulled[v].add(serial_of[person])
    kept, withheld = withhold(extract, sent, "fnr", opt_outs)

    expected_rows = [r for r in extract.iter_rows(named=True) if r[SERIAL] not in gone]
    assert kept.height == len(expected_rows)
    assert withheld.rows == extract.height - len(expected_rows)
    counts = {"a": 0, "b": 0}
    for got, row in zip(kept.iter_rows(named=True), expected_rows, strict=True):
        assert got[SERIAL] == row[SERIAL]  # order kept
        for v in ("a", "b"):
            if row[SERIAL] in nulled[v]:
                assert got[v] is None
                counts[v] += row[v] is not None
            else:
                assert got[v] == row[v]
    assert {v: n for v, n in withheld.values.items() if n} == {v: n for v, n in counts.items() if n}
    assert set(kept[SERIAL]).isdisjoint(gone)


def test_release_with_fnr_alone_withholds_nothing_from_a_job() -> None:
    """Deliveries carry løpenummer: an opt-out of release *with fødselsnummer* does not apply."""
    extract = pl.DataFrame({SERIAL: [1, 2], "a": [5, 6]})
    sent = pl.DataFrame({"fnr": ["k1", "k2"], SERIAL: [1, 2]})
    only_fnr = _opt_outs([("k1", "persons", [], "release-with-fnr")])
    kept, withheld = withhold(extract, sent, "fnr", only_fnr)
    assert kept.equals(extract) and withheld.rows == 0
    research = _opt_outs([("k1", "persons", [], "research")])
    kept, withheld = withhold(extract, sent, "fnr", research)
    assert kept[SERIAL].to_list() == [2] and withheld.rows == 1


# --- the opt-out table ----------------------------------------------------------------------


def test_read_opt_outs_names_file_column_and_row_never_the_person(tmp_path: Path) -> None:
    path = tmp_path / "optouts.parquet"
    _opt_outs(
        [
            (FNR, "persons", [], "research"),
            (FNR, "variables", ["smoking"], "registration"),
            (FNR, "everything", [], "research"),
        ]
    ).write_parquet(path)
    with pytest.raises(InputError) as caught:
        read_opt_outs(path)
    message = str(caught.value)
    assert "optouts.parquet" in message and "'scope'" in message and "row 3" in message
    assert FNR not in message

    _opt_outs([(FNR, "variables", [], "research")]).write_parquet(path)
    with pytest.raises(InputError, match="names no variable"):
        read_opt_outs(path)
    _opt_outs([(FNR, "persons", [], "marketing")]).write_parquet(path)
    with pytest.raises(InputError, match=r"'purpose'.*row 1"):
        read_opt_outs(path)
    pl.DataFrame({"person": [FNR], "scope": ["persons"]}).write_parquet(path)
    with pytest.raises(ColumnError, match="'variables'"):
        read_opt_outs(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(FileFormatError):
        read_opt_outs(path)


def test_a_registry_with_reservations_but_no_opt_out_table_is_refused(tmp_path: Path) -> None:
    persons = tmp_path / "persons.parquet"
    pl.DataFrame({"fnr": ["k1"], SERIAL: [1]}).write_parquet(persons)
    extract = pl.DataFrame({SERIAL: [1], "a": [1]})
    with pytest.raises(ColumnError, match="reservations"):
        withhold_at_registry(extract, persons, "fnr", None, registry="kpr", order=[SERIAL, "a"])


def test_an_extract_withheld_whole_is_an_error_not_an_empty_delivery(tmp_path: Path) -> None:
    persons, table = tmp_path / "persons.parquet", tmp_path / "optouts.parquet"
    pl.DataFrame({"fnr": ["k1"], SERIAL: [1]}).write_parquet(persons)
    _opt_outs([("k1", "persons", [], "research")]).write_parquet(table)
    extract = pl.DataFrame({SERIAL: [1, 1], "a": [1, 2]})
    with pytest.raises(InputError, match="withholds every one of the 2 rows"):
        withhold_at_registry(extract, persons, "fnr", table, registry="kpr", order=[SERIAL, "a"])


def test_sources_reservations_key(tmp_path: Path) -> None:
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[registries.kpr]\nfile = "kpr.parquet"\nid_column = "fnr"\n'
        'reservations = "optouts/kpr.parquet"\n',
        encoding="utf-8",
    )
    assert load_sources(sources).get("kpr").reservations == tmp_path / "optouts" / "kpr.parquet"
    sources.write_text(
        '[registries.x]\nfile = "x.parquet"\ningest = true\nid_column = "fnr"\n'
        'reservations = "optouts/x.parquet"\n',
        encoding="utf-8",
    )
    with pytest.raises(FileFormatError, match=r"registries\.x\.reservations"):
        load_sources(sources)


# --- the route modifier ---------------------------------------------------------------------


def test_route_has_a_reservation_filter_where_an_opt_out_covers_research() -> None:
    catalogue = Catalogue.load()
    for registry in ("kpr", "kreftregisteret", "mfr"):
        route = route_for(catalogue.get(registry))
        assert route.reservation_filter, registry
        assert any("reservation filter" in n for n in route.notes)
    assert not route_for(catalogue.get("npr")).reservation_filter
    kpr = catalogue.get("kpr")
    only_fnr = tuple(r for r in kpr.reservations if r.purposes == ("release-with-fnr",))
    assert only_fnr, "the catalogue records KPR's opt-out of release with fødselsnummer"
    assert not route_for(replace(kpr, reservations=only_fnr)).reservation_filter
    evidence = kpr.reservations[0].evidence
    quality = replace(
        catalogue.get("hoftebruddregisteret"),
        reservations=(Reservation("persons", (), ("registration",), evidence),),
    )
    route = route_for(quality)
    assert route.reservation_filter and route.consent_filter
