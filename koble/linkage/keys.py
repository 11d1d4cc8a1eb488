"""The keys a linkage run needs, stored encrypted, and the parties' transport keys.

A run uses two kinds of key:

* **Long-lived keys** in a key directory (``--keys DIR``), needed again to reproduce a
  delivery: the operator's keyset (project serial numbers), the TTP's keyset (registry
  pseudonyms) and the operator's Ed25519 signing key (the manifest). Keysets are stored by
  :mod:`koble.pseudonym.keystore`; the signing key by :mod:`koble.pseudonym.wrapping`, under
  the same KEK.
* **Transport keys** of every party (X25519 to receive transfers, Ed25519 to sign them),
  made per workspace. They protect files in transit only, so a reproduction may use new ones.

:func:`koble.pseudonym.wrapping.wrap_keys` seals the signing key under the KEK (AES-256-GCM,
its name and public values bound as associated data); any failure to open is a bare
:class:`CryptoError`. Linkage holds keys as key objects only, never as bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koble.errors import CryptoError, FileFormatError, UsageError
from koble.files import OutputSet, write_bytes, write_text
from koble.pseudonym.keys import Clock, Keyset, RandBytes
from koble.pseudonym.keystore import KeyWrapper, keyset_document, keyset_lock, load_keyset
from koble.pseudonym.opening import opening
from koble.pseudonym.signing import Ed25519Signer
from koble.pseudonym.wrapping import WrappingKey, unwrap_keys, wrap_keys

__all__ = ["LinkageKeys", "read_json", "write_json"]


def _json_text(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, document: object, *, mode: int | None = None) -> None:
    """Write ``document`` as sorted, indented JSON, atomically (:func:`koble.files.write_text`)."""
    write_text(path, _json_text(document), mode=mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True, repr=False)
class LinkageKeys:
    """The operator's keyset, the TTP's keyset and the operator's manifest signing key."""

    operator: Keyset
    ttp: Keyset
    signer: Ed25519Signer

    OPERATOR_FILE = "operator.keyset"
    TTP_FILE = "ttp.keyset"
    SIGNER_FILE = "operator.signing.json"
    PUBLIC_FILE = "operator.signing.pub.pem"
    #: Every file of a key directory, in the order they appear when it is created: the
    #: operator's keyset last, so that a directory holding it holds all of them.
    FILES = (TTP_FILE, SIGNER_FILE, PUBLIC_FILE, OPERATOR_FILE)

    @classmethod
    def create(
        cls, directory: Path, kek: KeyWrapper, *, randbytes: RandBytes, now: Clock
    ) -> LinkageKeys:
        """New keys, saved under ``directory`` (which must not hold keys already).

        The files are written as one set (:class:`~koble.files.OutputSet`): all are staged
        under temporary names and fsynced, then renamed into place with the operator's keyset
        last. A run killed or failing while it creates keys leaves no key file (at most a
        hidden temporary one), so the next run creates the keys afresh.
        """
        existing = [f for f in cls.FILES if (directory / f).exists()]
        if existing:
            raise UsageError(
                f"already holds {', '.join(existing)}; refusing to replace long-lived keys "
                "(deliveries made with them could no longer be reproduced)"
                + ("" if cls.OPERATOR_FILE in existing else f"; {cls._incomplete(directory)}"),
                path=directory,
            )
        keys = cls(
            Keyset.create(randbytes=randbytes, now=now),
            Keyset.create(randbytes=randbytes, now=now),
            Ed25519Signer.generate(randbytes),
        )
        public = {"key_id": keys.signer.key_id, "public_key": keys.signer.public_key_bytes().hex()}
        signer = wrap_keys({"ed25519": keys.signer}, WrappingKey.fresh(kek, randbytes),
                           randbytes=randbytes, public=public)  # fmt: skip
        texts = {
            cls.TTP_FILE: keyset_document(keys.ttp, kek, randbytes=randbytes),
            cls.SIGNER_FILE: _json_text(signer),
            cls.PUBLIC_FILE: keys.signer.public_pem().decode("ascii"),
            cls.OPERATOR_FILE: keyset_document(keys.operator, kek, randbytes=randbytes),
        }
        with OutputSet() as outputs:
            for name, text in texts.items():
                mode = None if name == cls.PUBLIC_FILE else 0o600
                with outputs.file(directory / name, mode=mode,
                                  last=name == cls.OPERATOR_FILE) as temp:  # fmt: skip
                    temp.write_text(text, encoding="utf-8")
        return keys

    @classmethod
    def _incomplete(cls, directory: Path) -> str:
        """What to tell an operator whose key directory holds only some of :attr:`FILES`."""
        missing = [f for f in cls.FILES if not (directory / f).exists()]
        return (
            f"the key directory is incomplete: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing (restore the directory from its "
            "backup; if no delivery was ever made with these keys, remove its key files "
            "and run again to create new ones)"
        )

    @classmethod
    def load(cls, directory: Path, kek: KeyWrapper) -> LinkageKeys:
        """The keys in ``directory``. A directory lacking one of the secret files (made by an
        older koble that was stopped while creating it, or damaged since) is a clear
        :class:`~koble.errors.FileFormatError` naming what is missing, not a failure to open
        a key that would send the operator to the passphrase."""
        if any(not (directory / f).is_file() for f in cls.FILES if f != cls.PUBLIC_FILE):
            raise FileFormatError(cls._incomplete(directory), path=directory)
        operator = load_keyset(directory / cls.OPERATOR_FILE, kek)
        ttp = load_keyset(directory / cls.TTP_FILE, kek)
        path = directory / cls.SIGNER_FILE
        with opening("signing key", path, getattr(kek, "source", "the key-encryption key")):
            try:
                document = read_json(path)
            except (OSError, ValueError):
                raise CryptoError() from None
            signer = unwrap_keys(document, kek).signer("ed25519")
            if signer.key_id != document["public"].get("key_id"):
                raise CryptoError()
        return cls(operator, ttp, signer)

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / cls.OPERATOR_FILE).is_file()

    @classmethod
    def open_or_create(
        cls, directory: Path, kek: KeyWrapper, *, randbytes: RandBytes, now: Clock
    ) -> LinkageKeys:
        """The keys in ``directory``, created first if it holds none. Under the operator
        keyset's lock: two runs sharing a new key directory must not both create keys (the
        second would replace the first's, and its deliveries could never be reproduced).
        A missing public key (it can be derived from the signing key) is written again."""
        with keyset_lock(directory / cls.OPERATOR_FILE):
            if not cls.exists(directory):
                return cls.create(directory, kek, randbytes=randbytes, now=now)
            keys = cls.load(directory, kek)
            if not (directory / cls.PUBLIC_FILE).exists():
                write_bytes(directory / cls.PUBLIC_FILE, keys.signer.public_pem())
            return keys

    def fingerprints(self) -> dict[str, str]:
        """Key ids only (never keys), as the manifest records them."""
        return {
            "operator_keyset_primary": self.operator.primary.key_id,
            "ttp_keyset_primary": self.ttp.primary.key_id,
            "operator_signing_key": self.signer.key_id,
        }

    def __repr__(self) -> str:
        return f"LinkageKeys({self.fingerprints()})"
