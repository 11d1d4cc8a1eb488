"""Transfers: every kind of wrong key or id is refused with the same uninformative
error."""

from __future__ import annotations

from pathlib import Path

import pytest

from koble.errors import CryptoError
from koble.linkage.transfer import read_header, seal_transfer
from koble.pseudonym.sealed import load_public
from tests.linkage._transfer_helpers import (
    TID,
    Parties,
    assert_bare,
    open_,
    parties_fixture,  # noqa: F401  (the fixture parties)
    seal,
    seeded,
)

# --- wrong keys and ids -------------------------------------------------------------------


@pytest.fixture
def sealed_file(parties: Parties, tmp_path: Path) -> Path:
    source = tmp_path / "data.csv"
    source.write_bytes(b"secret rows\n" * 10)
    target = tmp_path / "sealed.koblet"
    seal(parties, source, target)
    return target


def test_wrong_recipient_key_is_a_bare_crypto_error(
    parties: Parties, sealed_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "store" / "data.csv"
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed_file, target, key=parties.other_recipient)
    assert_bare(info.value)
    assert not target.exists()


@pytest.mark.parametrize("which", ["other signer", "recipient's own x25519", "garbage"])
def test_wrong_expected_sender_is_a_bare_crypto_error(
    parties: Parties, sealed_file: Path, tmp_path: Path, which: str
) -> None:
    public = {
        "other signer": parties.other_sender.public_key_bytes(),
        "recipient's own x25519": parties.recipient.public.raw,
        "garbage": b"\x01" * 31,
    }[which]
    target = tmp_path / "store" / "data.csv"
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed_file, target, sender_public=public)
    assert_bare(info.value)
    assert not target.exists()
    assert not target.parent.exists() or not any(target.parent.iterdir())


@pytest.mark.parametrize("transfer", ["P2026-014/t4", "P2026-015/t3", "", TID + " "])
def test_wrong_transfer_id_is_a_bare_crypto_error(
    parties: Parties, sealed_file: Path, tmp_path: Path, transfer: str
) -> None:
    target = tmp_path / "store" / "data.csv"
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed_file, target, transfer=transfer)
    assert_bare(info.value)
    assert not target.exists()


def test_a_transfer_signed_by_another_sender_does_not_open(
    parties: Parties, tmp_path: Path
) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"rows")
    sealed = tmp_path / "sealed"
    seal_transfer(
        source,
        sealed,
        transfer=TID,
        sender=parties.other_sender,
        recipient=parties.recipient.public,
        randbytes=seeded(5),
    )
    with pytest.raises(CryptoError) as info:
        open_(parties, sealed, tmp_path / "opened")
    assert_bare(info.value)
    assert read_header(sealed).sender == parties.other_sender.key_id


@pytest.mark.parametrize("raw", [bytes(32), b"\x01" + bytes(31)])
def test_sealing_to_a_low_order_key_is_a_crypto_error(
    parties: Parties, tmp_path: Path, raw: bytes
) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"rows")
    with pytest.raises(CryptoError) as info:
        seal_transfer(
            source,
            tmp_path / "out" / "sealed",
            transfer=TID,
            sender=parties.sender,
            recipient=load_public(raw),
            randbytes=seeded(5),
        )
    assert_bare(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.csv"]
