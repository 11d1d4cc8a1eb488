"""The signed delivery manifest (koble.linkage.manifest) and the auditor's check that uses it.

Signing and verifying, every change to the body breaking the signature, pinned key ids,
forged key pairs, the shape checks of read_manifest, and verify_delivery over a small
delivery directory.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.digests import sha256_file
from koble.errors import FileFormatError
from koble.linkage.keys import write_json
from koble.linkage.manifest import FORMAT, canonical, read_manifest, sign_manifest, signature_ok
from koble.linkage.verify import verify_delivery
from koble.pseudonym.signing import Ed25519Signer, key_id_of, verify_signature


def signer_from(seed: int) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32)))


OPERATOR = signer_from(21)
ATTACKER = signer_from(22)

BODY: dict[str, Any] = {
    "format": FORMAT,
    "project": {"id": "P2026-014", "title": "Hoftebrudd og utdanning"},
    "recipient": {"name": "Kari Nordmann", "organisation": "UiO"},
    "job": {"file": "job.toml", "sha256": "ab" * 32},
    "catalogue_version": "2026.1",
    "software": {"koble": "0.1.0", "duckdb": "2.0.0"},
    "engine": "duckdb",
    "created": "2026-11-01T12:00:00+00:00",
    "route": "distributed",
    "delivery_format": "parquet",
    "keys": {"operator_keyset_primary": "v1-0123456789abcdef"},
    "inputs": [{"party": "registry:npr", "file": "npr.parquet", "sha256": "cd" * 32, "rows": 9}],
    "outputs": [{"file": "cohort.parquet", "sha256": "ef" * 32, "rows": 7}],
    "transfers": [],
    "refusals": [],
    "reconciliation": [{"check": "rows", "ok": True}],
    "ratio": 0.5,
    "note": "Ærlig talt, Øystein på Ålesund",
}


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path to every scalar (and every empty container) in a JSON value."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    holder: Any = changed
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return changed


def different(value: Any) -> Any:
    """A value that is not ``value`` (in JSON), of the same type where possible."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x" if value else "x"
    if isinstance(value, list):
        return [0]
    if isinstance(value, dict):
        return {"x": 0}
    return 0


def test_sign_then_verify() -> None:
    document = sign_manifest(BODY, OPERATOR)
    assert set(document) == {"manifest", "signature"}
    assert document["manifest"] == BODY
    sig = document["signature"]
    assert sig["algorithm"] == "Ed25519"
    assert sig["key_id"] == OPERATOR.key_id
    assert bytes.fromhex(sig["public_key"]) == OPERATOR.public_key_bytes()
    assert verify_signature(
        OPERATOR.public_key_bytes(), canonical(BODY), bytes.fromhex(sig["value"])
    )
    ok, detail = signature_ok(document)
    assert ok, detail
    assert OPERATOR.key_id in detail
    assert signature_ok(document, key_id=OPERATOR.key_id)[0]


def test_signing_copies_the_body() -> None:
    body = copy.deepcopy(BODY)
    document = sign_manifest(body, OPERATOR)
    body["engine"] = "spark"
    assert document["manifest"]["engine"] == "duckdb"
    assert signature_ok(document)[0]


def test_canonical_form_sorts_keys_and_keeps_unicode() -> None:
    assert canonical({"b": 1, "a": [1, 2], "ø": "å"}) == '{"a":[1,2],"b":1,"ø":"å"}'.encode()


def test_the_signature_survives_writing_and_reading(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_json(path, sign_manifest(BODY, OPERATOR))
    document = read_manifest(path)
    assert document["manifest"] == BODY
    assert signature_ok(document, key_id=OPERATOR.key_id)[0]


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(extra=st.dictionaries(st.text(max_size=10), JSON_VALUE, max_size=5))
def test_any_json_body_survives_a_file_round_trip(
    extra: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    body = {**extra, "format": FORMAT}
    path = tmp_path_factory.getbasetemp() / "roundtrip" / "manifest.json"
    write_json(path, sign_manifest(body, OPERATOR))
    ok, detail = signature_ok(read_manifest(path), key_id=OPERATOR.key_id)
    assert ok, detail


@pytest.mark.parametrize("path", list(leaves(BODY)), ids=lambda p: ".".join(map(str, p)))
def test_changing_any_value_breaks_the_signature(path: tuple[Any, ...]) -> None:
    document = sign_manifest(BODY, OPERATOR)
    holder: Any = document["manifest"]
    for step in path:
        holder = holder[step]
    document["manifest"] = replaced(BODY, path, different(holder))
    ok, detail = signature_ok(document, key_id=OPERATOR.key_id)
    assert not ok
    assert detail == "the signature does not verify: the manifest was changed or mis-signed"


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from(sorted(BODY)), value=JSON_VALUE)
def test_any_new_value_for_any_key_breaks_the_signature(key: str, value: Any) -> None:
    changed = {**BODY, key: value}
    document = sign_manifest(BODY, OPERATOR)
    document["manifest"] = changed
    ok, _ = signature_ok(document)
    assert ok == (canonical(changed) == canonical(BODY))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: b.pop("note"), id="removed-key"),
        pytest.param(lambda b: b.update(extra=None), id="added-key"),
        pytest.param(lambda b: b["outputs"].append({"file": "x.csv"}), id="added-output"),
        pytest.param(lambda b: b.update(ratio=0.50000001), id="float"),
        pytest.param(lambda b: b["outputs"][0].update(rows=7.0), id="int-to-float"),
        pytest.param(lambda b: b["reconciliation"][0].update(ok=1), id="bool-to-int"),
    ],
)
def test_structural_changes_break_the_signature(change: Any) -> None:
    document = sign_manifest(BODY, OPERATOR)
    change(document["manifest"])
    assert not signature_ok(document)[0]


def test_a_pinned_wrong_key_id_names_both_ids() -> None:
    document = sign_manifest(BODY, OPERATOR)
    ok, detail = signature_ok(document, key_id=ATTACKER.key_id)
    assert not ok
    assert OPERATOR.key_id in detail
    assert ATTACKER.key_id in detail
    assert detail == f"signed by key {OPERATOR.key_id}, not the expected {ATTACKER.key_id}"


def test_a_public_key_that_does_not_match_its_key_id_fails() -> None:
    document = sign_manifest(BODY, OPERATOR)
    document["signature"]["public_key"] = ATTACKER.public_key_bytes().hex()
    ok, detail = signature_ok(document)
    assert not ok
    assert detail == "the signature's key id does not match its public key"


def test_a_consistent_forged_pair_fails_the_signature() -> None:
    """The attacker's public key and key id with the operator's signature: does not verify."""
    document = sign_manifest(BODY, OPERATOR)
    document["signature"]["public_key"] = ATTACKER.public_key_bytes().hex()
    document["signature"]["key_id"] = ATTACKER.key_id
    ok, detail = signature_ok(document)
    assert not ok
    assert "does not verify" in detail


def test_a_re_signed_forgery_is_caught_only_by_pinning() -> None:
    forged_body = {**BODY, "outputs": []}
    forged = sign_manifest(forged_body, ATTACKER)
    assert signature_ok(forged)[0]  # self-consistent: why auditors pin the key id
    ok, detail = signature_ok(forged, key_id=OPERATOR.key_id)
    assert not ok
    assert ATTACKER.key_id in detail and OPERATOR.key_id in detail


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("algorithm", "RSA", "is not Ed25519"),
        ("public_key", "zz" * 32, "not hex"),
        ("value", "not hex", "not hex"),
        ("public_key", "ab" * 31, "is not Ed25519"),
        ("public_key", "", "is not Ed25519"),
        ("value", "", "does not verify"),
        ("value", "00" * 64, "does not verify"),
        ("key_id", "0" * 16, "key id does not match"),
    ],
)
def test_malformed_signature_fields_fail_with_a_reason(field: str, value: str, reason: str) -> None:
    document = sign_manifest(BODY, OPERATOR)
    document["signature"][field] = value
    ok, detail = signature_ok(document)
    assert not ok
    assert reason in detail


def test_a_truncated_signature_value_fails() -> None:
    document = sign_manifest(BODY, OPERATOR)
    document["signature"]["value"] = document["signature"]["value"][:-2]
    assert not signature_ok(document)[0]


def test_key_id_of_is_the_hash_prefix() -> None:
    raw = OPERATOR.public_key_bytes()
    assert key_id_of(raw) == hashlib.sha256(raw).hexdigest()[:16] == OPERATOR.key_id


# --- read_manifest ------------------------------------------------------------------------


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        ("[]", f"not a {FORMAT} manifest"),
        ('"manifest"', f"not a {FORMAT} manifest"),
        ('{"manifest": {"format": "koble-manifest/1"}}', f"not a {FORMAT} manifest"),
    ],
)
def test_read_manifest_rejects_what_is_not_a_manifest(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "manifest.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(FileFormatError, match=message) as info:
        read_manifest(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.update(extra=1), id="extra-top-level-key"),
        pytest.param(lambda d: d.update(comment="hi"), id="comment"),
        pytest.param(lambda d: d["manifest"].update(format="koble-manifest/2"), id="format"),
        pytest.param(lambda d: d["manifest"].pop("format"), id="no-format"),
        pytest.param(lambda d: d.update(manifest=[1]), id="manifest-list"),
        pytest.param(lambda d: d.update(signature="sig"), id="signature-string"),
        pytest.param(lambda d: d.pop("signature"), id="no-signature"),
    ],
)
def test_read_manifest_checks_the_shape(tmp_path: Path, change: Any) -> None:
    document = sign_manifest(BODY, OPERATOR)
    change(document)
    path = write(tmp_path / "manifest.json", document)
    with pytest.raises(FileFormatError, match=f"not a {FORMAT} manifest") as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_read_manifest_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    with pytest.raises(FileFormatError, match=r"no manifest\.json") as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_read_manifest_does_not_check_the_signature(tmp_path: Path) -> None:
    document = sign_manifest(BODY, OPERATOR)
    document["manifest"]["engine"] = "spark"
    read = read_manifest(write(tmp_path / "manifest.json", document))
    assert read == document
    assert not signature_ok(read)[0]


# --- verify_delivery ----------------------------------------------------------------------


def make_delivery(directory: Path, signer: Ed25519Signer = OPERATOR) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "cohort.parquet"
    pq.write_table(pa.table({"project_id": ["p1", "p2", "p3"], "age": [40, 51, 62]}), data)
    body = {  # verify reads the body as a ManifestBody: its fields, and no others
        **{k: v for k, v in BODY.items() if k not in ("ratio", "note")},
        "outputs": [
            {"file": "cohort.parquet", "sha256": sha256_file(data), "rows": 3, "from": "operator"}
        ],
        "reconciliation": [{"check": "rows", "ok": True, "detail": "3 = 3"}],
    }
    write_json(directory / "manifest.json", sign_manifest(body, signer))
    return body


def failed(directory: Path, **kwargs: Any) -> list[str]:
    kwargs.setdefault("key_id", OPERATOR.key_id)
    return [c.name for c in verify_delivery(directory, **kwargs).checks if not c.ok]


def test_verify_delivery_fails_unpinned_and_catches_a_re_signed_forgery(tmp_path: Path) -> None:
    """Changing a file and re-signing the manifest with another key passes the manifest's
    own signature; only a pinned key catches it, so an unpinned check never verifies."""
    body = make_delivery(tmp_path)
    assert failed(tmp_path, key_id=None) == ["signing key pinned"]
    pq.write_table(pa.table({"project_id": ["x"], "age": [1]}), tmp_path / "cohort.parquet")
    forged = {**body, "outputs": [{"file": "cohort.parquet",
                                   "sha256": sha256_file(tmp_path / "cohort.parquet"),
                                   "rows": 1, "from": "operator"}]}  # fmt: skip
    write_json(tmp_path / "manifest.json", sign_manifest(forged, ATTACKER))
    assert failed(tmp_path, key_id=None) == ["signing key pinned"]
    assert failed(tmp_path) == ["signature"]


def test_verify_delivery_accepts_an_intact_delivery(tmp_path: Path) -> None:
    make_delivery(tmp_path)
    report = verify_delivery(tmp_path, key_id=OPERATOR.key_id)
    assert report.ok, report.to_text()
    assert report.key_id == OPERATOR.key_id
    assert report.project == "P2026-014"
    assert "VERIFIED" in report.to_text()


def test_verify_delivery_with_the_wrong_pinned_key(tmp_path: Path) -> None:
    make_delivery(tmp_path)
    assert failed(tmp_path, key_id=ATTACKER.key_id) == ["signature"]


def test_verify_delivery_of_a_changed_file(tmp_path: Path) -> None:
    make_delivery(tmp_path)
    pq.write_table(
        pa.table({"project_id": ["p1", "p2", "p3"], "age": [40, 51, 63]}),
        tmp_path / "cohort.parquet",
    )
    assert failed(tmp_path) == ["file cohort.parquet"]


def test_verify_delivery_of_a_changed_manifest(tmp_path: Path) -> None:
    make_delivery(tmp_path)
    path = tmp_path / "manifest.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["manifest"]["recipient"]["name"] = "Ola"
    write_json(path, document)
    assert failed(tmp_path) == ["signature"]


def test_verify_delivery_of_unlisted_and_missing_files(tmp_path: Path) -> None:
    make_delivery(tmp_path)
    (tmp_path / "extra.csv").write_text("a\n1\n", encoding="utf-8")
    assert failed(tmp_path) == ["no unlisted files"]
    (tmp_path / "cohort.parquet").unlink()
    assert sorted(failed(tmp_path)) == ["file cohort.parquet", "no unlisted files"]


def test_verify_delivery_of_a_failed_reconciliation(tmp_path: Path) -> None:
    body = make_delivery(tmp_path)
    body["reconciliation"] = [{"check": "rows in = rows out", "ok": False, "detail": "3 = 2"}]
    write_json(tmp_path / "manifest.json", sign_manifest(body, OPERATOR))
    report = verify_delivery(tmp_path, key_id=OPERATOR.key_id)
    assert [c.name for c in report.checks if not c.ok] == ["counts reconcile"]
    assert "rows in = rows out" in report.to_text()
