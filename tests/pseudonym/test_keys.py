"""Keysets and the keystore: life cycle, encryption at rest, no leaks of key material."""

from __future__ import annotations

import base64
import copy
import json
import pickle
from pathlib import Path

import pytest

from koble.errors import CryptoError, FileFormatError, UsageError
from koble.pseudonym.insecure_cleartext import export_key
from koble.pseudonym.keys import Keyset, KeyStatus, check_domain
from koble.pseudonym.keystore import PassphraseKek, RawKek, load_keyset, save_keyset
from tests.pseudonym.conftest import clock, seeded


def test_life_cycle(keyset: Keyset) -> None:
    assert keyset.primary.version == 1
    second = keyset.rotate(randbytes=seeded(2), now=clock)
    assert keyset.primary == second and second.version == 2
    keyset.disable(1)
    assert keyset.info(1).status is KeyStatus.DISABLED
    with pytest.raises(UsageError, match="disabled"):
        keyset._material(1)
    keyset.enable(1)
    keyset.destroy(1)
    assert keyset.info(1).status is KeyStatus.DESTROYED
    with pytest.raises(UsageError, match="destroyed"):
        keyset.enable(1)
    with pytest.raises(UsageError, match="primary"):
        keyset.disable(2)
    with pytest.raises(UsageError, match="not enabled"):
        keyset.set_primary(1)


def test_no_pickle_no_copy_and_repr_shows_ids_only(keyset: Keyset) -> None:
    material = export_key(keyset, 1)
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            attempt(keyset)
    text = repr(keyset) + str(keyset)
    assert keyset.primary.key_id in text
    for form in (material.hex(), base64.b64encode(material).decode(), repr(material)):
        assert form not in text
    assert not hasattr(keyset, "__dict__")


@pytest.mark.parametrize("kek", [PassphraseKek(b"correct horse"), RawKek(bytes(range(32)))])
def test_round_trip_at_rest(tmp_path: Path, keyset: Keyset, kek: PassphraseKek | RawKek) -> None:
    keyset.rotate(randbytes=seeded(3), now=clock)
    keyset.disable(1)
    path = save_keyset(keyset, tmp_path / "ks.json", kek, randbytes=seeded(4))
    text = path.read_text()
    for version in (1, 2):
        material = export_key(keyset, version)
        assert material.hex() not in text and base64.b64encode(material).decode() not in text
    loaded = load_keyset(path, kek)
    assert loaded.keys == keyset.keys
    assert export_key(loaded, 2) == export_key(keyset, 2)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_wrong_passphrase_and_tampering_are_one_uninformative_error(
    tmp_path: Path, keyset: Keyset
) -> None:
    path = save_keyset(keyset, tmp_path / "ks.json", PassphraseKek(b"right"), randbytes=seeded(5))
    with pytest.raises(CryptoError) as wrong:
        load_keyset(path, PassphraseKek(b"wrong"))
    document = json.loads(path.read_text())
    document["keys"][0]["status"] = "disabled"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    with pytest.raises(CryptoError) as edited:
        load_keyset(tampered, PassphraseKek(b"right"))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(CryptoError) as broken:
        load_keyset(garbage, PassphraseKek(b"right"))
    # the same message for all three, naming only the file and the secret (never why)
    messages = {
        str(e.value).replace(str(f), "KEYSET")
        for e, f in ((wrong, path), (edited, tampered), (broken, garbage))
    }
    assert messages == {
        "cannot open keyset KEYSET with the passphrase: cryptographic operation failed"
    }
    assert all(e.value.__cause__ is None and e.value.__suppress_context__ for e in (wrong, edited))
    with pytest.raises(FileFormatError, match="no such keyset file"):
        load_keyset(tmp_path / "missing.json", PassphraseKek(b"right"))


def test_domains_are_checked() -> None:
    assert check_domain("reseptregisteret") == "reseptregisteret"
    assert check_domain("project:p2026-17") == "project:p2026-17"
    for bad in ("", "NPR", "a b", "x" * 65, "../etc"):
        with pytest.raises(UsageError, match="invalid domain"):
            check_domain(bad)
