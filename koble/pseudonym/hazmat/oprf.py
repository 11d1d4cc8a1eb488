"""The OPRF of RFC 9497, mode OPRF (0x00), ciphersuite ristretto255-SHA512, over libsodium.

!!! Hazardous material: these functions take and return raw scalars and group elements as
``bytes``. Use :mod:`koble.pseudonym.blind`, which wraps them in key objects.

Every name below is the RFC's, in snake case, and every docstring names its section. The
group is ristretto255 (RFC 9496), the hash SHA-512; elements and scalars are 32 bytes
(``Noe``, ``Ns``), outputs 64 (``Nh``). Randomness is always passed in: a fixed blind
scalar (:func:`blind`) or a ``randbytes`` callable (:func:`blind_random`, :func:`blind_batch`).

libsodium
    The group arithmetic is libsodium's (``crypto_core_ristretto255_*``,
    ``crypto_scalarmult_ristretto255*``), called directly on the library handle that
    :mod:`koble.pseudonym.hazmat.sodium` loads on first use (importing this module never
    fails); a whole batch then works in one buffer.

Validation (RFC 9497 §4.1, §4.7, §3.3)
    Every element that crosses the wire is decoded and checked: an invalid encoding or the
    identity raises :class:`~koble.errors.CryptoError` with no detail (DeserializeElement).
    Scalars must be canonical (< L) and non-zero. Inputs longer than 2^16 - 1 bytes, which
    ``I2OSP(len(input), 2)`` cannot encode, are refused. Note that libsodium 1.0.18's
    ``crypto_core_ristretto255_is_valid_point`` accepts the identity, so it is checked here.

Batches
    libsodium works on one element at a time, so :func:`blind_batch`, :func:`evaluate_batch`
    and :func:`finalize_batch` loop in Python. The loops call the C functions on addresses
    inside one ``ctypes`` buffer per batch (no per-element ctypes or Python objects other
    than the digests and the result ``bytes``), and :func:`finalize_batch` inverts all blinds
    with one inversion (Montgomery's trick) instead of one each. Measured on the project
    machine (Intel Xeon, 2 cores shared with other work, one thread, libsodium 1.0.18), per
    element: ``crypto_scalarmult_ristretto255`` 53-67 µs, ``from_hash`` 17 µs,
    ``scalar_invert`` 35 µs (which the shared inversion saves), SHA-512 0.7 µs, one ctypes
    call about 0.4 µs. Best of 5 on 10 000 elements (``benchmarks/bench_blind.py``):
    :func:`blind_batch` 72 µs, :func:`evaluate_batch` 53 µs, :func:`finalize_batch` 57 µs an
    element, about 13 800, 18 700 and 17 700 elements/s. The point multiplication is the
    cost, not the loop. ctypes releases the GIL during each call, so a caller may split a
    batch across threads (evaluate on 2 threads: 34 500 elements/s).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence

from koble.errors import CryptoError
from koble.pseudonym.hazmat.sodium import Sodium, sodium

__all__ = [
    "CONTEXT",
    "ELEMENT_BYTES",
    "IDENTIFIER",
    "MAX_INPUT_BYTES",
    "MODE_OPRF",
    "OUTPUT_BYTES",
    "SCALAR_BYTES",
    "SEED_BYTES",
    "RandBytes",
    "blind",
    "blind_batch",
    "blind_evaluate",
    "blind_random",
    "context_string",
    "derive_key_pair",
    "deserialize_element",
    "deserialize_scalar",
    "evaluate",
    "evaluate_batch",
    "expand_message_xmd",
    "finalize",
    "finalize_batch",
    "hash_to_group",
    "hash_to_scalar",
    "i2osp",
    "random_scalar",
    "scalar_mult_gen",
]

RandBytes = Callable[[int], bytes]

MODE_OPRF = 0x00
IDENTIFIER = b"ristretto255-SHA512"
ELEMENT_BYTES = 32  #: Noe
SCALAR_BYTES = 32  #: Ns
OUTPUT_BYTES = 64  #: Nh
SEED_BYTES = 32  #: Ns: the seed of DeriveKeyPair
MAX_INPUT_BYTES = 0xFFFF  #: the longest input I2OSP(len(input), 2) can encode
#: The order of ristretto255 (RFC 9496 §4.1).
ORDER = 2**252 + 27742317777372353535851937790883648493

_HASH_BYTES = 64  # b_in_bytes of SHA-512
_BLOCK_BYTES = 128  # s_in_bytes of SHA-512
_UNIFORM_BYTES = 64  # HashToGroup and HashToScalar expand to 64 bytes (RFC 9497 §4.1)
_ZERO = bytes(32)


def i2osp(value: int, length: int) -> bytes:
    """I2OSP (RFC 8017 §4.1): ``value`` as ``length`` big-endian bytes."""
    if value < 0 or value >= 1 << (8 * length):
        raise CryptoError()
    return value.to_bytes(length, "big")


def context_string(mode: int = MODE_OPRF, identifier: bytes = IDENTIFIER) -> bytes:
    """contextString (RFC 9497 §3.1): ``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier``."""
    return b"OPRFV1-" + i2osp(mode, 1) + b"-" + identifier


CONTEXT = context_string()


# -- expand_message_xmd and the hashes to the group -----------------------------------------


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """expand_message_xmd with SHA-512 (RFC 9380 §5.3.1; DSTs over 255 bytes per §5.3.3)."""
    if len(dst) > 255:
        dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + dst).digest()
    ell = -(-length // _HASH_BYTES)
    if ell > 255 or length > 0xFFFF or length <= 0:
        raise CryptoError()
    dst_prime = dst + i2osp(len(dst), 1)
    msg_prime = bytes(_BLOCK_BYTES) + msg + i2osp(length, 2) + b"\x00" + dst_prime
    b_0 = hashlib.sha512(msg_prime).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    blocks = [b_i]
    x_0 = int.from_bytes(b_0, "big")
    for i in range(2, ell + 1):
        mixed = (x_0 ^ int.from_bytes(b_i, "big")).to_bytes(_HASH_BYTES, "big")
        b_i = hashlib.sha512(mixed + i2osp(i, 1) + dst_prime).digest()
        blocks.append(b_i)
    return b"".join(blocks)[:length]


class _Expander:
    """expand_message_xmd(·, dst, 64) with the constant parts hashed once.

    For 64 output bytes ``ell`` is 1, so the output is ``b_1``. The SHA-512 state after the
    128 zero bytes of ``Z_pad`` is kept and copied, and both suffixes are precomputed.
    """

    __slots__ = ("_after_pad", "_suffix_0", "_suffix_1")

    def __init__(self, dst: bytes) -> None:
        if not 0 < len(dst) <= 255:
            raise CryptoError()
        dst_prime = dst + i2osp(len(dst), 1)
        self._after_pad = hashlib.sha512(bytes(_BLOCK_BYTES))
        self._suffix_0 = i2osp(_UNIFORM_BYTES, 2) + b"\x00" + dst_prime
        self._suffix_1 = b"\x01" + dst_prime

    def __call__(self, msg: bytes) -> bytes:
        h = self._after_pad.copy()
        h.update(msg)
        h.update(self._suffix_0)
        return hashlib.sha512(h.digest() + self._suffix_1).digest()


@functools.cache
def _expander(dst: bytes) -> _Expander:
    return _Expander(dst)


def _check_input(data: bytes) -> None:
    if len(data) > MAX_INPUT_BYTES:
        raise CryptoError()


def hash_to_group(data: bytes, context: bytes = CONTEXT) -> bytes:
    """HashToGroup (RFC 9497 §4.1): hash_to_ristretto255 (RFC 9380 Appendix B).

    64 uniform bytes from expand_message_xmd with DST ``"HashToGroup-" || contextString``,
    mapped with libsodium's ``crypto_core_ristretto255_from_hash`` (the one-way map of
    RFC 9496 §4.3.4). Returns the serialised element, which may be the identity.
    """
    lib = sodium()
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    lib.from_hash(out, _expander(b"HashToGroup-" + context)(data))
    return out.raw


def hash_to_scalar(data: bytes, dst: bytes | None = None, context: bytes = CONTEXT) -> bytes:
    """HashToScalar (RFC 9497 §4.1): 64 bytes of expand_message_xmd, little-endian, mod L.

    The DST is ``"HashToScalar-" || contextString`` unless given (DeriveKeyPair gives its own).
    """
    lib = sodium()
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    lib.scalar_reduce(out, _expander(dst or b"HashToScalar-" + context)(data))
    return out.raw


# -- serialisation and validation -----------------------------------------------------------


def _is_canonical_nonzero(lib: Sodium, scalar: bytes, out: ctypes.Array[ctypes.c_char]) -> bool:
    """``0 < scalar < L``, in constant time: reducing a canonical scalar leaves it unchanged."""
    lib.scalar_reduce(out, scalar + _ZERO)
    return hmac.compare_digest(out.raw, scalar) & (not hmac.compare_digest(scalar, _ZERO))


def deserialize_scalar(data: bytes) -> bytes:
    """DeserializeScalar (RFC 9497 §4.1): 32 bytes, little-endian, canonical; zero refused.

    RFC 9497 accepts zero here; koble refuses it everywhere a scalar is deserialised (keys and
    blinds), since a zero key or blind makes every output the identity.
    """
    if type(data) is not bytes or len(data) != SCALAR_BYTES:
        raise CryptoError()
    if not _is_canonical_nonzero(sodium(), data, ctypes.create_string_buffer(SCALAR_BYTES)):
        raise CryptoError()
    return data


def deserialize_element(data: bytes) -> bytes:
    """DeserializeElement (RFC 9497 §4.1): decode (RFC 9496 §4.3.1) and refuse the identity."""
    if type(data) is not bytes or len(data) != ELEMENT_BYTES:
        raise CryptoError()
    if sodium().is_valid_point(data) != 1 or hmac.compare_digest(data, _ZERO):
        raise CryptoError()
    return data


def scalar_mult_gen(scalar: bytes) -> bytes:
    """ScalarMultGen (RFC 9497 §2.1): ``scalar * G`` for a non-zero canonical scalar."""
    lib = sodium()
    deserialize_scalar(scalar)
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if lib.scalarmult_base(out, scalar) != 0:
        raise CryptoError()
    return out.raw


def random_scalar(randbytes: RandBytes) -> bytes:
    """RandomScalar (RFC 9497 §4.7, "random number generation using extra random bits").

    64 random bytes reduced mod L (statistical distance from uniform below 2^-250); zero,
    which RFC 9497 allows but a blind cannot be, is drawn again.
    """
    lib = sodium()
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    while True:
        lib.scalar_reduce(out, _random(randbytes, 64))
        scalar = out.raw
        if not hmac.compare_digest(scalar, _ZERO):
            return scalar


def _random(randbytes: RandBytes, length: int) -> bytes:
    data = randbytes(length)
    if type(data) is not bytes or len(data) != length:
        raise CryptoError()
    return data


# -- the protocol ---------------------------------------------------------------------------


def derive_key_pair(seed: bytes, info: bytes, context: bytes = CONTEXT) -> tuple[bytes, bytes]:
    """DeriveKeyPair (RFC 9497 §3.2.1): ``(skS, pkS)`` from a 32-byte seed and ``info``.

    ``deriveInput = seed || I2OSP(len(info), 2) || info``; HashToScalar of
    ``deriveInput || I2OSP(counter, 1)`` with DST ``"DeriveKeyPair" || contextString`` until
    the scalar is not zero (counter at most 255, else DeriveKeyPairError, here CryptoError).
    """
    if len(seed) != SEED_BYTES or len(info) > MAX_INPUT_BYTES:
        raise CryptoError()
    derive_input = seed + i2osp(len(info), 2) + info
    dst = b"DeriveKeyPair" + context
    for counter in range(256):
        sk = hash_to_scalar(derive_input + i2osp(counter, 1), dst=dst)
        if not hmac.compare_digest(sk, _ZERO):
            return sk, scalar_mult_gen(sk)
    raise CryptoError()  # pragma: no cover - probability 2^-64000


def blind(data: bytes, blind_scalar: bytes) -> tuple[bytes, bytes]:
    """Blind (RFC 9497 §3.3.1) with the blind passed in: ``(blind, blindedElement)``.

    ``inputElement = HashToGroup(input)`` (InvalidInputError if it is the identity) and
    ``blindedElement = blind * inputElement``.
    """
    _check_input(data)
    deserialize_scalar(blind_scalar)
    element = hash_to_group(data)
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if hmac.compare_digest(element, _ZERO) or sodium().scalarmult(out, blind_scalar, element):
        raise CryptoError()
    return blind_scalar, out.raw


def blind_random(data: bytes, randbytes: RandBytes) -> tuple[bytes, bytes]:
    """Blind (RFC 9497 §3.3.1) with ``blind = RandomScalar()`` drawn from ``randbytes``."""
    return blind(data, random_scalar(randbytes))


def blind_evaluate(sk: bytes, blinded_element: bytes) -> bytes:
    """BlindEvaluate (RFC 9497 §3.3.1): ``skS * blindedElement``.

    The blinded element is deserialised first: an invalid encoding or the identity raises
    CryptoError.
    """
    deserialize_scalar(sk)
    deserialize_element(blinded_element)
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if sodium().scalarmult(out, sk, blinded_element) != 0:
        raise CryptoError()  # pragma: no cover - a valid non-identity element times sk != 0
    return out.raw


def _finalize_hash(data: bytes, unblinded: bytes) -> bytes:
    return hashlib.sha512(
        len(data).to_bytes(2, "big") + data + b"\x00\x20" + unblinded + b"Finalize"
    ).digest()


def finalize(data: bytes, blind_scalar: bytes, evaluated_element: bytes) -> bytes:
    """Finalize (RFC 9497 §3.3.1): the 64-byte PRF output.

    ``N = ScalarInverse(blind) * evaluatedElement`` and ``Hash(I2OSP(len(input), 2) || input
    || I2OSP(len(unblindedElement), 2) || unblindedElement || "Finalize")``.
    """
    _check_input(data)
    deserialize_scalar(blind_scalar)
    deserialize_element(evaluated_element)
    lib = sodium()
    inverse = ctypes.create_string_buffer(SCALAR_BYTES)
    unblinded = ctypes.create_string_buffer(ELEMENT_BYTES)
    if lib.scalar_invert(inverse, blind_scalar) != 0:
        raise CryptoError()  # pragma: no cover - the blind is non-zero
    if lib.scalarmult(unblinded, inverse, evaluated_element) != 0:
        raise CryptoError()  # pragma: no cover - a valid element times a non-zero scalar
    result = _finalize_hash(data, unblinded.raw)
    _wipe(inverse)
    return result


def evaluate(sk: bytes, data: bytes) -> bytes:
    """Evaluate (RFC 9497 §3.3.1): the PRF output computed by the key holder, unblinded."""
    _check_input(data)
    deserialize_scalar(sk)
    element = hash_to_group(data)
    out = ctypes.create_string_buffer(ELEMENT_BYTES)
    if hmac.compare_digest(element, _ZERO) or sodium().scalarmult(out, sk, element):
        raise CryptoError()
    return _finalize_hash(data, out.raw)


# -- batches --------------------------------------------------------------------------------


def blind_batch(inputs: Sequence[bytes], randbytes: RandBytes) -> tuple[list[bytes], list[bytes]]:
    """Blind (RFC 9497 §3.3.1) every input with a fresh random blind: ``(blinds, blinded)``.

    Equal to ``blind(input, blind)`` element by element. Randomness is drawn in one call
    (64 bytes an input), reduced into one buffer, and wiped after use.
    """
    lib = sodium()
    n = len(inputs)
    scalars = ctypes.create_string_buffer(SCALAR_BYTES * n)
    points = ctypes.create_string_buffer(ELEMENT_BYTES * n)
    scalars_at, points_at = ctypes.addressof(scalars), ctypes.addressof(points)
    uniform = ctypes.create_string_buffer(_random(randbytes, 64 * n), 64 * n)
    uniform_at = ctypes.addressof(uniform)
    reduce, from_hash, scalarmult = lib.scalar_reduce, lib.from_hash, lib.scalarmult
    expand = _expander(b"HashToGroup-" + CONTEXT)
    element = ctypes.create_string_buffer(ELEMENT_BYTES)
    try:
        for i, data in enumerate(inputs):
            if len(data) > MAX_INPUT_BYTES:
                raise CryptoError()
            scalar_at, point_at = scalars_at + SCALAR_BYTES * i, points_at + ELEMENT_BYTES * i
            reduce(scalar_at, uniform_at + 64 * i)
            from_hash(element, expand(data))
            if scalarmult(point_at, scalar_at, element) != 0:
                # The element is the identity (InvalidInputError) or the blind is zero (drawn
                # again); each happens with probability about 2^-252.
                if hmac.compare_digest(element.raw, _ZERO):
                    raise CryptoError()
                while scalarmult(point_at, scalar_at, element) != 0:  # pragma: no cover
                    reduce(scalar_at, _random(randbytes, 64))
        raw_scalars, raw_points = scalars.raw, points.raw
    finally:
        _wipe(uniform)
        _wipe(scalars)
    return _split(raw_scalars, SCALAR_BYTES), _split(raw_points, ELEMENT_BYTES)


def evaluate_batch(sk: bytes, blinded: Sequence[bytes]) -> list[bytes]:
    """BlindEvaluate (RFC 9497 §3.3.1) of every blinded element, in order.

    One invalid or identity element fails the whole batch with a bare CryptoError: libsodium's
    ``crypto_scalarmult_ristretto255`` refuses an invalid encoding, and with a non-zero key
    its result is the identity (which it also refuses) exactly when the input is.
    """
    deserialize_scalar(sk)
    scalarmult = sodium().scalarmult
    out = ctypes.create_string_buffer(ELEMENT_BYTES * len(blinded))
    at = ctypes.addressof(out)
    for element in blinded:
        if type(element) is not bytes or len(element) != ELEMENT_BYTES:
            raise CryptoError()
        if scalarmult(at, sk, element) != 0:
            raise CryptoError()
        at += ELEMENT_BYTES
    return _split(out.raw, ELEMENT_BYTES)


def finalize_batch(
    inputs: Sequence[bytes], blinds: Sequence[bytes], evaluated: Sequence[bytes]
) -> list[bytes]:
    """Finalize (RFC 9497 §3.3.1) every element, in order: equal to :func:`finalize` each.

    The blinds are inverted together with Montgomery's trick (one ``scalar_invert`` and three
    scalar multiplications an element instead of one ``scalar_invert`` each, which costs half
    a point multiplication). An invalid blind or evaluated element fails the whole batch.
    """
    n = len(inputs)
    if len(blinds) != n or len(evaluated) != n:
        raise CryptoError()
    if any(len(data) > MAX_INPUT_BYTES for data in inputs):
        raise CryptoError()
    if n == 0:
        return []
    lib = sodium()
    mul, scalarmult = lib.scalar_mul, lib.scalarmult
    check = ctypes.create_string_buffer(SCALAR_BYTES)
    prefix = ctypes.create_string_buffer(SCALAR_BYTES * n)  # prefix[i] = blind_0 ... blind_i
    at = ctypes.addressof(prefix)
    try:
        for i, scalar in enumerate(blinds):
            if type(scalar) is not bytes or len(scalar) != SCALAR_BYTES:
                raise CryptoError()
            if not _is_canonical_nonzero(lib, scalar, check):
                raise CryptoError()
            if i == 0:
                ctypes.memmove(at, scalar, SCALAR_BYTES)
            else:
                mul(at + SCALAR_BYTES * i, at + SCALAR_BYTES * (i - 1), scalar)
        running = ctypes.create_string_buffer(SCALAR_BYTES)  # (blind_0 ... blind_i)^-1
        if lib.scalar_invert(running, at + SCALAR_BYTES * (n - 1)) != 0:
            raise CryptoError()  # pragma: no cover - every blind is non-zero
        inverse = ctypes.create_string_buffer(SCALAR_BYTES)
        unblinded = ctypes.create_string_buffer(ELEMENT_BYTES * n)
        points_at = ctypes.addressof(unblinded)
        for i in range(n - 1, -1, -1):
            element = evaluated[i]
            if type(element) is not bytes or len(element) != ELEMENT_BYTES:
                raise CryptoError()
            if i:
                mul(inverse, running, at + SCALAR_BYTES * (i - 1))  # blind_i^-1
                mul(running, running, blinds[i])
                factor: ctypes.Array[ctypes.c_char] = inverse
            else:
                factor = running
            if scalarmult(points_at + ELEMENT_BYTES * i, factor, element) != 0:
                raise CryptoError()
        _wipe(inverse)
        _wipe(running)
    finally:
        _wipe(prefix)
    points = unblinded.raw
    return [
        _finalize_hash(data, points[ELEMENT_BYTES * i : ELEMENT_BYTES * (i + 1)])
        for i, data in enumerate(inputs)
    ]


def _split(raw: bytes, size: int) -> list[bytes]:
    return [raw[start : start + size] for start in range(0, len(raw), size)]


def _wipe(buffer: ctypes.Array[ctypes.c_char]) -> None:
    ctypes.memset(buffer, 0, ctypes.sizeof(buffer))
