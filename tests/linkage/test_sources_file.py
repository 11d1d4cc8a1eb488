"""``--sources FILE``: feeds loaded by ``ingest = true``, registries also named by the data
holder's own names, and the format as the README documents it (issues 14, 15)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from koble.errors import FileFormatError
from koble.linkage.sources import RegistrySource, load_sources
from tests.linkage.conftest import JobWriter, World

PASS = "correct horse battery staple"
README = Path(__file__).resolve().parents[2] / "README.md"

FEED = """\
[registries.reseptregisteret]
file = "feeds/reseptregisteret.parquet"
ingest = true
id_column = "fnr"
other_id_columns = { prescriber_hpr = "hpr" }
date_column = "dispensing_date"
"""


def _write(directory: Path, text: str) -> Path:
    path = directory / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_ingest_true_is_a_feed_loaded_by_sealed_ingest(tmp_path: Path) -> None:
    source = load_sources(_write(tmp_path, FEED)).get("reseptregisteret")
    assert source == RegistrySource(
        "reseptregisteret",
        tmp_path / "feeds" / "reseptregisteret.parquet",
        "fnr_pseudonym",  # the loaded table's key: the TTP's pseudonym of the fnr column
        "dispensing_date",
        None,
        ingest=True,
        id_columns={"fnr": "fnr", "prescriber_hpr": "hpr"},
    )


def test_a_registry_may_be_named_by_the_holders_own_name(tmp_path: Path) -> None:
    text = (
        '[registries.hoftebruddregisteret]\nnames = ["quality_registry"]\nfile = "q.parquet"\n'
        'id_column = "fnr"\n'
    )
    sources = load_sources(_write(tmp_path, text))
    assert sorted(sources.registries) == ["hoftebruddregisteret"]
    assert sources.get("hoftebruddregisteret") == sources.get("quality_registry")
    assert sources.get("hoftebruddregisteret").registry == "hoftebruddregisteret"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[registries.hoftebruddregisteret]\nnames = ["quality_registry"]\nfile = "a"\n'
            'id_column = "fnr"\n[registries.quality_registry]\nfile = "b"\nid_column = "fnr"\n',
            "already given as [registries.hoftebruddregisteret]",
        ),
        (FEED.replace("ingest = true", 'ingest = "yes"'), "registries.reseptregisteret.ingest"),
        (FEED.replace('id_column = "fnr"', 'id_column = "person"'), "must be called fnr"),
        (FEED.replace('"hpr" }', '"nope" }'), "a scheme must be one of fnr, hpr, orgnr"),
        (FEED.replace("ingest = true\n", ""), "other_id_columns needs ingest = true"),
        (
            FEED.replace('{ prescriber_hpr = "hpr" }', '"prescriber_hpr"'),
            "other_id_columns must be a table",
        ),
    ],
)
def test_bad_ingest_and_alias_entries_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(FileFormatError) as info:
        load_sources(path)
    assert message in str(info.value) and str(path) in str(info.value)


def _readme_sources_example() -> str:
    """The ```toml block of the README's sources file section."""
    text = README.read_text("utf-8")
    section = text[text.index("### The sources file") :]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_sources_example_loads_as_documented(tmp_path: Path) -> None:
    sources = load_sources(_write(tmp_path, _readme_sources_example()))
    assert sources.get("quality_registry").consent_column == "consent"
    resept = sources.get("reseptregisteret")
    assert resept.ingest and resept.id_columns == {"fnr": "fnr", "prescriber_hpr": "hpr"}
    assert sources.operator_history == tmp_path / "identity_history.parquet"


def test_run_with_a_sources_file_using_aliases_and_ingest(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    """The README's sources example, pointed at a synthetic world, runs the demo's
    distributed job (the registries it names) end to end: the feed is ingested, the
    alias found, rows delivered."""
    head, *sections = world.distributed.read_text("utf-8").split("\n[registries.")
    kept = [s for s in sections if s.startswith(("npr]", "hoftebruddregisteret]", "resept"))]
    head = head.replace("recover = true", "recover = false")  # no population register here
    job = job_variant("sources", "\n[registries.".join([head, *kept]))
    text = _readme_sources_example()
    for name in re.findall(r'"([\w/]+\.parquet)"', text):
        text = text.replace(f'"{name}"', f'"{(world.path / name).as_posix()}"')
    sources = _write(tmp_path, text)
    workspace = tmp_path / "ws"
    result = CliRunner().invoke(
        main,
        ["run", str(job), "--workspace", str(workspace), "--sources",
         str(sources), "--keys", str(tmp_path / "keys")],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert re.search(r"registry:reseptregisteret +sealed_ingest", result.stdout)
    delivery = workspace / "researcher" / "delivery"
    for name in ("reseptregisteret_extract.csv", "hoftebruddregisteret_extract.csv"):
        assert pl.read_csv(delivery / name, separator=";", infer_schema=False).height > 0
