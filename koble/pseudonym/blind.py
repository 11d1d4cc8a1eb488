"""Blind pseudonyms: the pseudonym service evaluates an OPRF without seeing the identifiers.

The client (a registry) canonicalises and deduplicates its identifiers, blinds each one
with a fresh random scalar (:func:`blind`) and sends only the blinded elements; the service
multiplies them by its key for the domain (:meth:`BlindKey.evaluate`) and sends them back;
the client unblinds and hashes them (:meth:`BlindedBatch.finalize`) into one pseudonym per
input row. The OPRF is RFC 9497's, mode OPRF, ristretto255-SHA512
(:mod:`koble.pseudonym.hazmat.oprf`); the pseudonym is ``F(k_domain, "fnr:" || compact)``.

What blind mode protects
    * The service never sees an identifier or a pseudonym: a blinded element is a uniformly
      random group element whatever the identifier, and the pseudonym is computed by the
      client alone after the response.
    * A passive observer of the exchange learns nothing either: requests are random
      elements and responses are those times a key it does not know.
    * The client cannot compute pseudonyms offline: every pseudonym needs one evaluation
      by the service, which holds the only key.
    * Not reversible: there is no decryption. Unlike the default AES scheme
      (:mod:`koble.pseudonym.scheme`), the trusted third party cannot re-identify a blind
      pseudonym through :mod:`koble.pseudonym.reverse`; that needs the identifier again.

What it does not protect
    * The service is still an oracle. An authorised client can pseudonymise any number it
      likes, and the space of fødselsnummer is small (about 10^8 valid values), so a client
      that may make ~10^8 evaluations can build the whole dictionary. Authorisation, rate
      limits and auditing of the service still matter as much as in the default mode.
    * The key holder can evaluate the PRF directly
      (:func:`~koble.pseudonym.hazmat.oprf.evaluate`). If pseudonymised data ever reaches
      the service, it can re-identify it by enumerating the identifier space (about 1.5
      core-hours at the rate below): keep pseudonymised data away from the service, as the
      TTP design already requires.
    * Pseudonyms of one person agree across registries only within one domain (one key),
      as in the default mode. Identity changes (old to current fødselsnummer) must be
      resolved by the client before blinding: the service can no longer resolve them.

What it costs (measured on the project machine: Intel Xeon, 2 cores shared with other
work, libsodium 1.0.18; ``benchmarks/bench_blind.py``, 10 000 distinct identifiers, best of 5)
    * client, :func:`blind`: about 13 800 elements/s (validation, hash to the group and one
      point multiplication each);
    * service, :meth:`BlindKey.evaluate`: about 18 700 elements/s on one thread (one point
      multiplication each), 34 500 on two threads (ctypes releases the GIL);
    * client, :meth:`BlindedBatch.finalize`: about 17 700 elements/s (one point
      multiplication each; the inversions of the blinds are shared across the batch);
    * against about 13 million identifiers/s for the default AES path
      (:func:`~koble.pseudonym.pseudonymise.pseudonymise_values`): each step is some 750 to
      1 000 times slower. The 5.5 million people of the population register cost the service
      about 5 minutes of one core, and each client about 12 minutes of one core.
    * wire: 32 bytes an element each way (a ristretto255 element), per distinct identifier;
      64 characters in hex, 44 in base64. The client keeps a 32-byte blind per element
      until it finalises.

Pseudonym format
    The first 32 bytes of the 64-byte RFC 9497 output, as 64 lowercase hex characters
    (:data:`BLIND_PSEUDONYM_LENGTH`). 256 bits leave collisions out of reach (for 10^8
    people the chance of any collision is about 10^-61) and a prefix of a PRF output is a
    PRF output; the other 32 bytes would double the width of every pseudonym column and
    add nothing, since guessing is bounded by the key, not the length. The length also
    tells blind pseudonyms (64) from the default AES ones (36), so the two cannot be mixed
    up in one column. Pseudonyms do not say which key made them, so the service returns
    :attr:`BlindKey.key_id` with each evaluation (``X-Koble-Key-Id``) and the client
    (:meth:`koble.pseudonym.client.ServiceClient.blind_pseudonymise`) checks it against the
    key it expects, pinned or from ``/v1/oprf/key``, for its manifest.

libsodium, through pysodium
    The group arithmetic is libsodium's, loaded by the maintained binding pysodium. pysodium
    (0.7.19 here) does have bindings for ``crypto_core_ristretto255_*`` and
    ``crypto_scalarmult_ristretto255``; :mod:`koble.pseudonym.hazmat.oprf` nevertheless calls
    the C functions through ``ctypes`` on pysodium's library handle, because a batch then
    works in one buffer where pysodium's wrappers allocate per element and call a version
    check on every call. Measured on the project machine (one thread, 3 000 elements):
    pysodium's ``crypto_scalarmult_ristretto255`` 47 µs an element against 44 µs for
    :func:`~koble.pseudonym.hazmat.oprf.evaluate_batch`, validation included: the point
    multiplication dominates, so the choice is about 7 % of the service's time, not
    correctness. Both release the GIL during the C call.

Keys are never plain bytes in this API: :class:`BlindKey` is derived from a
:class:`~koble.pseudonym.keys.Keyset` and never printed, pickled or copied, and a
:class:`BlindedBatch` keeps its blinds to itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.errors import InvalidIdentifier, UsageError
from koble.pseudonym.hazmat import oprf
from koble.pseudonym.hazmat.primitives import hkdf_sha256
from koble.pseudonym.keys import Keyset, RandBytes, check_domain
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.unshareable import Unshareable
from koble.registries.identifiers.column import validate_column

__all__ = ["BLIND_PSEUDONYM_LENGTH", "BlindKey", "BlindedBatch", "blind"]

#: Characters in a blind pseudonym: 32 bytes of the OPRF output in hex.
BLIND_PSEUDONYM_LENGTH = 64
_OUTPUT_BYTES = BLIND_PSEUDONYM_LENGTH // 2
_SEED_INFO = b"koble/oprf/v1"
#: What is blinded is the scheme's prefix and the compact identifier, so that the same digits
#: under two schemes (an HPR number and an organisasjonsnummer) give different pseudonyms.
_INPUT_PREFIX: dict[str, bytes] = {"fnr": b"fnr:", "hpr": b"hpr:", "orgnr": b"orgnr:"}
_ROWS_SHOWN = 10


class BlindKey(Unshareable):
    """The service's OPRF private key for one domain. Never printed, pickled or copied.

    Made with :meth:`from_keyset`: the seed is HKDF-SHA256 of the keyset's domain key with
    info ``koble/oprf/v1``, and the key pair is RFC 9497's DeriveKeyPair(seed, domain).
    The same keyset, key version and domain always give the same key.
    """

    refusal = "a BlindKey cannot be pickled or copied; derive it from the keyset again"

    __slots__ = ("__weakref__", "_domain", "_key_id", "_public", "_secret")

    _domain: str
    _key_id: str
    _public: bytes
    _secret: bytes

    def __init__(self) -> None:
        raise TypeError("make a BlindKey with BlindKey.from_keyset")

    @classmethod
    def from_keyset(cls, keyset: Keyset, domain: str, *, version: int | None = None) -> BlindKey:
        """The key of ``domain`` under key ``version`` of ``keyset`` (default: the primary)."""
        check_domain(domain)
        version = keyset.primary.version if version is None else version
        seed = hkdf_sha256(keyset._domain_key(version, domain), info=_SEED_INFO, salt=b"")
        secret, public = oprf.derive_key_pair(seed, domain.encode())
        key = object.__new__(cls)
        key._domain, key._key_id = domain, keyset.info(version).key_id
        key._secret, key._public = secret, public
        return key

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def key_id(self) -> str:
        """The id of the keyset key this key was derived from (``v<version>-<fingerprint>``)."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """``pkS``, 32 bytes: for clients to check proofs in the verifiable modes later."""
        return self._public

    def evaluate(self, blinded: Sequence[bytes]) -> list[bytes]:
        """BlindEvaluate every blinded element, in order (32 bytes each way).

        Any element that is not a valid ristretto255 encoding, or is the identity, fails the
        whole request with a bare :class:`~koble.errors.CryptoError`.
        """
        return oprf.evaluate_batch(self._secret, blinded)

    def __repr__(self) -> str:
        return f"BlindKey(domain={self._domain!r}, key_id={self._key_id!r})"


class BlindedBatch(Unshareable):
    """A client's blinded identifiers, waiting for the service's evaluation.

    :attr:`blinded` is what to send: one element per distinct identifier. The blinds, the
    identifiers and the map back to input rows stay inside; :meth:`finalize` turns the
    service's answer into one pseudonym per input row and then forgets the blinds.
    """

    refusal = "a BlindedBatch cannot be pickled or copied: it holds the blinds"

    __slots__ = ("__weakref__", "_blinded", "_blinds", "_inputs", "_rows")

    def __init__(
        self,
        inputs: list[bytes],
        blinds: list[bytes],
        blinded: list[bytes],
        rows: npt.NDArray[np.int64],
    ) -> None:
        self._inputs, self._blinds, self._blinded, self._rows = inputs, blinds, blinded, rows

    @property
    def blinded(self) -> list[bytes]:
        """The blinded elements to send to the service, 32 bytes each, one per distinct value."""
        return self._blinded

    @property
    def rows(self) -> int:
        """The number of input rows (pseudonyms :meth:`finalize` returns)."""
        return len(self._rows)

    def finalize(self, evaluated: Sequence[bytes]) -> list[str]:
        """One pseudonym per input row, in input order, from the service's evaluated elements.

        ``evaluated`` must be the response to :attr:`blinded`, in the same order. An invalid
        element fails with a bare :class:`~koble.errors.CryptoError`. A batch finalises once.
        """
        if not self._blinds and self._blinded:
            raise UsageError("this batch is already finalised; blind the identifiers again")
        if len(evaluated) != len(self._blinded):
            raise UsageError(
                f"the service returned {len(evaluated)} evaluated elements "
                f"for {len(self._blinded)} blinded"
            )
        outputs = oprf.finalize_batch(self._inputs, self._blinds, evaluated)
        distinct = pl.Series([output[:_OUTPUT_BYTES].hex() for output in outputs], dtype=pl.String)
        self._blinds, self._inputs = [], []
        return distinct.gather(self._rows).to_list()

    def __len__(self) -> int:
        return len(self._blinded)

    def __repr__(self) -> str:
        return f"BlindedBatch(rows={len(self._rows)}, distinct={len(self._blinded)})"


def blind(
    identifiers: Sequence[str],
    randbytes: RandBytes,
    *,
    id_scheme: IdScheme = "fnr",
    test_numbers: bool = False,
) -> BlindedBatch:
    """Validate, canonicalise, deduplicate and blind ``identifiers`` (client side).

    Every value is validated with :func:`~koble.registries.identifiers.column.validate_column`
    and reduced to its compact form, so ``"010101 12345"`` and ``"01010112345"`` are one
    identifier; each distinct identifier is blinded once with 64 bytes from ``randbytes``.
    Any invalid value refuses the whole batch with an
    :class:`~koble.errors.InvalidIdentifier` naming the rows (1-based) and reasons, never the
    values. ``test_numbers`` accepts synthetic test numbers.
    """
    if id_scheme not in _INPUT_PREFIX:
        raise UsageError(f"unknown identifier scheme {id_scheme!r}; use one of fnr, hpr, orgnr")
    checked = validate_column(list(identifiers), scheme=id_scheme, test_numbers=test_numbers)
    invalid = checked.with_row_index("row", offset=1).filter(~checked["valid"])
    if len(invalid):
        rows = invalid["row"].to_list()
        reasons = invalid["reason"].cast(pl.String).to_list()
        shown = [f"{row} ({reason})" for row, reason in zip(rows, reasons, strict=True)]
        more = f" and {len(shown) - _ROWS_SHOWN} more" if len(shown) > _ROWS_SHOWN else ""
        raise InvalidIdentifier(
            reasons[0],
            f"{len(invalid)} of {len(checked)} identifiers are not valid {id_scheme}: rows "
            f"{', '.join(shown[:_ROWS_SHOWN])}{more}; nothing was blinded",
            row=rows[0],
        )
    compact = checked["compact"]
    # Distinct values in sorted order, and each row's index among them (its dense rank).
    rows_to_distinct = (compact.rank(method="dense").cast(pl.Int64) - 1).to_numpy()
    prefix = _INPUT_PREFIX[id_scheme]
    inputs = [prefix + value.encode("ascii") for value in compact.unique().sort().to_list()]
    blinds, blinded = oprf.blind_batch(inputs, randbytes)
    return BlindedBatch(inputs, blinds, blinded, rows_to_distinct)
