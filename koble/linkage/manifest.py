"""The delivery manifest: what was delivered, from what, under which keys; signed (Ed25519).

``manifest.json`` is ``{"manifest": BODY, "signature": {...}}``. The signature is Ed25519
over the canonical JSON of BODY (keys sorted, separators ``,`` and ``:``, UTF-8), by the
operator's long-lived signing key; ``signature`` gives the algorithm, the key id and the raw
public key so an auditor can check it, and pin the key id they expect
(``koble audit verify --key-id``). BODY holds the job hash, catalogue and software versions,
key ids (never keys), every input's and output's SHA-256 and row count, the plan's transfers,
and the reconciliation checks. It holds no identifier and no data value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from koble.errors import FileFormatError
from koble.pseudonym.signing import Signer, key_id_of, verify_signature

__all__ = ["FORMAT", "canonical", "read_manifest", "sign_manifest", "signature_ok"]

FORMAT: Final = "koble-manifest/1"
ALGORITHM: Final = "Ed25519"


def canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_manifest(body: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """The signed manifest document for ``body``."""
    return {
        "manifest": dict(body),
        "signature": {
            "algorithm": ALGORITHM,
            "key_id": signer.key_id,
            "public_key": signer.public_key_bytes().hex(),
            "value": signer.sign(canonical(body)).hex(),
        },
    }


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest document at ``path``; its shape is checked, not its signature."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileFormatError("no manifest.json in the delivery", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"the manifest is not JSON: {exc}", path=path) from None
    if (
        not isinstance(document, dict)
        or set(document) != {"manifest", "signature"}
        or not isinstance(document["manifest"], dict)
        or document["manifest"].get("format") != FORMAT
        or not isinstance(document["signature"], dict)
    ):
        raise FileFormatError(f"not a {FORMAT} manifest", path=path)
    return document


def signature_ok(document: Mapping[str, Any], *, key_id: str | None = None) -> tuple[bool, str]:
    """Whether the manifest's signature holds (and is by ``key_id``, when given), and why not."""
    sig = document["signature"]
    try:
        public = bytes.fromhex(str(sig.get("public_key", "")))
        value = bytes.fromhex(str(sig.get("value", "")))
    except ValueError:
        return False, "the signature fields are not hex"
    if sig.get("algorithm") != ALGORITHM or len(public) != 32:
        return False, f"the signature is not {ALGORITHM}"
    if key_id_of(public) != sig.get("key_id"):
        return False, "the signature's key id does not match its public key"
    if key_id is not None and sig.get("key_id") != key_id:
        return False, f"signed by key {sig.get('key_id')}, not the expected {key_id}"
    if not verify_signature(public, canonical(document["manifest"]), value):
        return False, "the signature does not verify: the manifest was changed or mis-signed"
    return True, f"valid Ed25519 signature by key {sig['key_id']}"
