"""Linkage keys (koble.linkage.keys) and party workspaces (.workspace); the wrapping itself
is tested in tests/pseudonym/test_wrapping.py.

Round trips, wrong KEKs and tampered metadata as bare CryptoErrors, keys that load back the
same, no key material in reprs or public files, private files readable by the owner only.
"""

from __future__ import annotations

import base64
import datetime
import json
import pickle
import random
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from koble.errors import CryptoError, KobleError, UsageError
from koble.linkage.keys import LinkageKeys, read_json
from koble.linkage.transfer import open_transfer, seal_transfer
from koble.linkage.workspace import DIRECTORY, Workspace, party_dir
from koble.pseudonym.keystore import RawKek
from koble.pseudonym.wrapping import WrappingKey, wrap_keys

BARE = "cryptographic operation failed"
KEK = RawKek(bytes(range(32)))
OTHER_KEK = RawKek(bytes(range(1, 33)))
PARTIES = ["operator", "ttp", "registry:npr", "registry:kreftregisteret", "researcher"]
RandBytes = Callable[[int], bytes]


def seeded(seed: int) -> RandBytes:
    return random.Random(seed).randbytes


def now() -> datetime.datetime:
    return datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)


def assert_bare(exc: CryptoError) -> None:
    # at most which secret failed to open which file (issue 12), never why
    assert re.fullmatch(rf"(cannot open [a-z ]+ \S+ with the [a-z -]+: )?{BARE}", str(exc))
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def spellings(secret: bytes) -> list[str]:
    """Ways a secret could show up in text."""
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), repr(secret)]


def assert_absent(secret: bytes, text: str) -> None:
    for spelling in spellings(secret):
        assert spelling not in text


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- LinkageKeys --------------------------------------------------------------------------


def create_keys(directory: Path, seed: int = 5) -> LinkageKeys:
    return LinkageKeys.create(directory, KEK, randbytes=seeded(seed), now=now)


def private_material(keys: LinkageKeys) -> list[bytes]:
    return [
        keys.signer._key.private_bytes_raw(),
        *(keys.operator._material_any(i.version) for i in keys.operator.keys),
        *(keys.ttp._material_any(i.version) for i in keys.ttp.keys),
    ]


def test_linkage_keys_load_back_the_same(tmp_path: Path) -> None:
    created = create_keys(tmp_path)
    loaded = LinkageKeys.load(tmp_path, KEK)
    assert loaded.fingerprints() == created.fingerprints()
    assert private_material(loaded) == private_material(created)
    assert loaded.signer.public_key_bytes() == created.signer.public_key_bytes()
    assert set(created.fingerprints()) == {
        "operator_keyset_primary",
        "ttp_keyset_primary",
        "operator_signing_key",
    }
    assert created.fingerprints()["operator_signing_key"] == created.signer.key_id


def test_the_three_keys_are_distinct(tmp_path: Path) -> None:
    keys = create_keys(tmp_path)
    material = private_material(keys)
    assert len(set(material)) == len(material) == 3
    assert keys.operator.primary.fingerprint != keys.ttp.primary.fingerprint


def test_linkage_keys_files(tmp_path: Path) -> None:
    keys = create_keys(tmp_path)
    assert LinkageKeys.exists(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["operator.keyset", "ttp.keyset", "operator.signing.json", "operator.signing.pub.pem"]
    )
    for name in ("operator.keyset", "ttp.keyset", "operator.signing.json"):
        assert mode_of(tmp_path / name) == 0o600, name
    text = "".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir())
    for secret in private_material(keys):
        assert_absent(secret, text)
    signing = read_json(tmp_path / "operator.signing.json")
    assert signing["public"] == {
        "key_id": keys.signer.key_id,
        "public_key": keys.signer.public_key_bytes().hex(),
    }
    assert (tmp_path / "operator.signing.pub.pem").read_bytes() == keys.signer.public_pem()


def test_repr_shows_key_ids_and_no_key_material(tmp_path: Path) -> None:
    keys = create_keys(tmp_path)
    shown = repr(keys) + str(keys)
    for secret in private_material(keys):
        assert_absent(secret, shown)
    assert keys.signer.key_id in shown
    assert keys.operator.primary.key_id in shown
    assert keys.ttp.primary.key_id in shown


def test_linkage_keys_cannot_be_pickled(tmp_path: Path) -> None:
    keys = create_keys(tmp_path)
    with pytest.raises(TypeError):
        pickle.dumps(keys)


def test_linkage_keys_load_with_the_wrong_kek(tmp_path: Path) -> None:
    create_keys(tmp_path)
    with pytest.raises(CryptoError) as info:
        LinkageKeys.load(tmp_path, OTHER_KEK)
    assert_bare(info.value)


def test_a_signing_key_wrapped_under_another_kek_does_not_load(tmp_path: Path) -> None:
    """The keysets open; the signing key alone is under another KEK."""
    create_keys(tmp_path / "a")
    LinkageKeys.create(tmp_path / "b", OTHER_KEK, randbytes=seeded(6), now=now)
    (tmp_path / "b" / "operator.signing.json").replace(tmp_path / "a" / "operator.signing.json")
    with pytest.raises(CryptoError) as info:
        LinkageKeys.load(tmp_path / "a", KEK)
    assert_bare(info.value)


@pytest.mark.parametrize(
    "damage",
    [
        # a missing file is named instead (tests/test_hardening_round2_files.py)
        pytest.param(lambda p: p.write_text("{not json", encoding="utf-8"), id="not-json"),
        pytest.param(lambda p: p.write_bytes(b"\xff\xfe"), id="not-utf8"),
        pytest.param(
            lambda p: p.write_text(
                json.dumps({**read_json(p), "public": {"key_id": "0" * 16}}), encoding="utf-8"
            ),
            id="public-key-id",
        ),
    ],
)
def test_a_damaged_signing_key_file_is_a_bare_crypto_error(
    tmp_path: Path, damage: Callable[[Path], Any]
) -> None:
    create_keys(tmp_path)
    damage(tmp_path / "operator.signing.json")
    with pytest.raises(CryptoError) as info:
        LinkageKeys.load(tmp_path, KEK)
    assert_bare(info.value)


def test_a_signing_key_whose_recorded_key_id_is_wrong_does_not_load(tmp_path: Path) -> None:
    """Wrapped correctly under the KEK, but recording another key's id: refused."""
    keys = create_keys(tmp_path)
    public = {"key_id": "0" * 16, "public_key": keys.signer.public_key_bytes().hex()}
    wrapping = WrappingKey.fresh(KEK, seeded(19))
    document = wrap_keys({"ed25519": keys.signer}, wrapping, randbytes=seeded(19), public=public)
    (tmp_path / "operator.signing.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CryptoError) as info:
        LinkageKeys.load(tmp_path, KEK)
    assert_bare(info.value)


def test_open_or_create_creates_once(tmp_path: Path) -> None:
    first = LinkageKeys.open_or_create(tmp_path, KEK, randbytes=seeded(7), now=now)
    second = LinkageKeys.open_or_create(tmp_path, KEK, randbytes=seeded(8), now=now)
    assert second.fingerprints() == first.fingerprints()
    assert private_material(second) == private_material(first)


def test_the_same_randomness_gives_the_same_keys(tmp_path: Path) -> None:
    a = create_keys(tmp_path / "a", seed=9)
    b = create_keys(tmp_path / "b", seed=9)
    c = create_keys(tmp_path / "c", seed=10)
    assert a.fingerprints() == b.fingerprints()
    assert set(a.fingerprints().values()).isdisjoint(c.fingerprints().values())


def test_create_refuses_a_directory_that_holds_keys(tmp_path: Path) -> None:
    first = create_keys(tmp_path, seed=11)
    with pytest.raises(KobleError):
        create_keys(tmp_path, seed=12)
    assert LinkageKeys.load(tmp_path, KEK).fingerprints() == first.fingerprints()


# --- Workspace ----------------------------------------------------------------------------


def open_workspace(root: Path, parties: list[str] = PARTIES, seed: int = 13) -> Workspace:
    return Workspace.open(root, parties, KEK, randbytes=seeded(seed))


def key_ids(ws: Workspace, parties: list[str] = PARTIES) -> dict[str, tuple[str, str]]:
    return {p: (ws.keys(p).receive.fingerprint, ws.keys(p).sign.key_id) for p in parties}


def private_transport(ws: Workspace, parties: list[str] = PARTIES) -> list[bytes]:
    return [
        secret
        for p in parties
        for secret in (ws.keys(p).receive._raw_private(), ws.keys(p).sign._key.private_bytes_raw())
    ]


def test_reopening_a_workspace_gives_the_same_keys(tmp_path: Path) -> None:
    first = open_workspace(tmp_path)
    second = open_workspace(tmp_path, seed=14)
    assert key_ids(second) == key_ids(first)
    assert private_transport(second) == private_transport(first)
    assert second.fingerprints() == first.fingerprints()


def test_every_party_has_its_own_keys(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    secrets = private_transport(ws)
    assert len(set(secrets)) == len(secrets) == 2 * len(PARTIES)
    ids = [i for pair in key_ids(ws).values() for i in pair]
    assert len(set(ids)) == len(ids)


def test_every_party_gets_inbox_outbox_and_store(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    for party in PARTIES:
        folder = tmp_path / party_dir(party)
        assert ws.party_root(party) == folder
        assert ws.inbox(party) == folder / "inbox"
        assert ws.outbox(party) == folder / "outbox"
        assert ws.store(party) == folder / "store"
        for sub in ("inbox", "outbox", "store"):
            assert (folder / sub).is_dir(), (party, sub)
        assert mode_of(folder / "keys.json") == 0o600
    assert (tmp_path / "registry-npr").is_dir()
    assert not any(":" in p.name for p in tmp_path.iterdir())


def test_keys_json_holds_no_private_bytes_in_the_clear(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    for party in PARTIES:
        text = (tmp_path / party_dir(party) / "keys.json").read_text(encoding="utf-8")
        for secret in private_transport(ws, [party]):
            assert_absent(secret, text)
        document = json.loads(text)
        assert document["public"] == {
            "x25519": ws.keys(party).receive.public.raw.hex(),
            "ed25519": ws.keys(party).sign.public_key_bytes().hex(),
        }


def test_directory_json_holds_public_keys_only(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    text = (tmp_path / DIRECTORY).read_text(encoding="utf-8")
    for secret in private_transport(ws):
        assert_absent(secret, text)
    directory = json.loads(text)
    assert set(directory) == {"kek", "parties"}
    assert directory["kek"] == {"kind": "raw"}
    assert set(directory["parties"]) == set(PARTIES)
    for party in PARTIES:
        keys = ws.keys(party)
        assert directory["parties"][party] == {
            "x25519": keys.receive.public.raw.hex(),
            "ed25519": keys.sign.public_key_bytes().hex(),
            "x25519_fingerprint": keys.receive.fingerprint,
            "ed25519_key_id": keys.sign.key_id,
        }
        assert ws.public_receive(party) == keys.receive.public
        assert ws.public_sign(party) == keys.sign.public_key_bytes()


def test_party_keys_repr_shows_no_key_material(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    for party in PARTIES:
        shown = repr(ws.keys(party))
        for secret in private_transport(ws, [party]):
            assert_absent(secret, shown)
        assert ws.keys(party).receive.fingerprint in shown
        assert ws.keys(party).sign.key_id in shown


def test_fingerprints_are_sorted_public_ids(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    prints = ws.fingerprints()
    assert list(prints) == sorted(PARTIES)
    for party, ids in prints.items():
        assert ids == {
            "x25519": ws.keys(party).receive.fingerprint,
            "ed25519": ws.keys(party).sign.key_id,
        }


def test_keys_of_an_unknown_party(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path, ["operator"])
    with pytest.raises(UsageError, match="registry:npr"):
        ws.keys("registry:npr")


def test_reopening_with_the_wrong_kek_is_a_bare_crypto_error(tmp_path: Path) -> None:
    open_workspace(tmp_path)
    with pytest.raises(CryptoError) as info:
        Workspace.open(tmp_path, PARTIES, OTHER_KEK, randbytes=seeded(15))
    assert_bare(info.value)


def test_a_tampered_keys_json_is_a_bare_crypto_error(tmp_path: Path) -> None:
    open_workspace(tmp_path, ["operator", "ttp"])
    path = tmp_path / "ttp" / "keys.json"
    document = read_json(path)
    document["public"]["ed25519"] = "00" * 32
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CryptoError) as info:
        open_workspace(tmp_path, ["operator", "ttp"])
    assert_bare(info.value)


def test_adding_a_party_keeps_the_others(tmp_path: Path) -> None:
    first = open_workspace(tmp_path, ["operator", "ttp"])
    second = open_workspace(tmp_path, ["operator", "ttp", "researcher"], seed=16)
    assert key_ids(second, ["operator", "ttp"]) == key_ids(first, ["operator", "ttp"])
    assert set(read_json(tmp_path / DIRECTORY)["parties"]) == {"operator", "ttp", "researcher"}


def test_a_transfer_between_workspace_parties(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path)
    source = ws.store("registry:npr") / "extract.parquet"
    source.write_bytes(b"rows of data")
    sealed = ws.outbox("registry:npr") / "t1-extract.parquet.koblet"
    seal_transfer(
        source,
        sealed,
        transfer="P1/t1",
        sender=ws.keys("registry:npr").sign,
        recipient=ws.public_receive("ttp"),
        randbytes=seeded(17),
    )
    # reopened (as another process would): the same keys open it
    again = open_workspace(tmp_path, seed=18)
    open_transfer(
        sealed,
        again.store("ttp") / "extract.parquet",
        key=again.keys("ttp").receive,
        sender_public=again.public_sign("registry:npr"),
        transfer="P1/t1",
    )
    assert (again.store("ttp") / "extract.parquet").read_bytes() == b"rows of data"
    with pytest.raises(CryptoError):
        open_transfer(
            sealed,
            again.store("researcher") / "extract.parquet",
            key=again.keys("researcher").receive,
            sender_public=again.public_sign("registry:npr"),
            transfer="P1/t1",
        )
