"""Objects holding key material refuse to be pickled or copied.

A key that can be pickled ends up in a file, a cache, a worker's queue or a crash dump; one
that can be copied outlives the object its owner meant to drop. Every class holding key
material (keysets, KEKs, signing keys, OPRF keys and blinds, sealing keys) mixes this in,
so the refusal is the same everywhere: ``pickle`` (any protocol), ``copy.copy`` and
``copy.deepcopy`` raise :class:`TypeError` with the class's own :attr:`refusal`, which names
what to do instead and never the key.
"""

from __future__ import annotations

from typing import ClassVar, NoReturn

__all__ = ["Unshareable"]


class Unshareable:
    """Mix-in: instances cannot be pickled or copied."""

    __slots__ = ()

    #: The message of the TypeError (what the object is, and what to do instead).
    refusal: ClassVar[str] = "key material cannot be pickled or copied"

    def _refuse(self, *_: object) -> NoReturn:
        raise TypeError(self.refusal)

    __reduce__ = _refuse
    __reduce_ex__ = _refuse
    __getstate__ = _refuse
    __copy__ = _refuse
    __deepcopy__ = _refuse
