"""Every object holding key material refuses pickle (every protocol), copy and deepcopy."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest

from koble.pseudonym.keystore import PassphraseKek, RawKek
from koble.pseudonym.unshareable import Unshareable

SECRET = bytes(range(32))


def _leaks() -> list[Callable[[object], object]]:
    dumps = [lambda o, p=p: pickle.dumps(o, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    return [*dumps, copy.copy, copy.deepcopy]


@pytest.mark.parametrize(
    "make",
    [lambda: RawKek(SECRET), lambda: PassphraseKek(b"correct horse battery staple")],
    ids=["raw-kek", "passphrase-kek"],
)
def test_keks_refuse_pickle_and_copy_without_showing_the_key(make: Callable[[], object]) -> None:
    kek = make()
    for leak in _leaks():
        with pytest.raises(TypeError, match="KEK cannot be pickled or copied") as caught:
            leak(kek)
        assert SECRET.hex() not in str(caught.value) and "horse" not in str(caught.value)


def test_every_key_class_mixes_in_the_refusal() -> None:
    from koble.pseudonym.blind import BlindedBatch, BlindKey
    from koble.pseudonym.keys import Keyset
    from koble.pseudonym.sealed import PartyKey
    from koble.pseudonym.signing import Ed25519Signer
    from koble.pseudonym.wrapping import ContentKey, WrappingKey

    for cls in (
        BlindKey,
        BlindedBatch,
        Keyset,
        Ed25519Signer,
        ContentKey,
        WrappingKey,
        RawKek,
        PartyKey,
    ):
        assert issubclass(cls, Unshareable), cls
        assert "cannot be pickled or copied" in cls.refusal, cls
