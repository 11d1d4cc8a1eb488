"""Changing a keyset on disk, audited: create, rotate, enable, disable, destroy, set primary.

What ``koble keys`` calls. A change is never saved without its audit event, and an event is
never written for a change that was not saved. Under the keyset's lock
(:func:`~koble.pseudonym.keystore.keyset_lock`) each change:

1. loads the keyset and makes the change in memory;
2. checks the audit event (:func:`~koble.pseudonym.audit.check_event`): an actor or value the
   log refuses stops the command here, with nothing written anywhere;
3. writes the new keyset file under a temporary name and fsyncs it;
4. appends the event to the audit log (a failure here removes the temporary file: keyset
   unchanged, no event);
5. renames the new keyset into place.

Why audit before the rename, not after: the other order leaves, when the append fails, a
saved change with no record, and a destroyed or rotated key that nobody can account for is
the failure the audit log exists to prevent. This order leaves one window, the rename itself
(atomic, and failing only when the file system does): then the keyset is unchanged and a
second event, ``keys-<change>-not-saved``, is appended (if the log still takes it) so the
pair stays consistent for anyone reading the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal

from koble.errors import UsageError
from koble.files import OutputSet, shared_file
from koble.pseudonym.audit import check_event
from koble.pseudonym.auditing import AuditSink
from koble.pseudonym.keys import Clock, Keyset, RandBytes
from koble.pseudonym.keystore import KeyWrapper, keyset_document, keyset_lock, load_keyset

__all__ = ["AuditOpener", "Change", "change_keyset", "create_keyset"]

Change = Literal["rotate", "enable", "disable", "destroy", "set-primary"]

#: Opens the audit sink (None: not audited) for the ``with`` block. It is called once the
#: keyset's lock is held: the audit log's own lock does not wait, so a command queued for the
#: keyset must not already hold the log.
AuditOpener = Callable[[], AbstractContextManager[AuditSink | None]]


def _unaudited() -> AbstractContextManager[AuditSink | None]:
    return nullcontext(None)


def _commit(keyset: Keyset, path: Path, kek: KeyWrapper, *, operation: str, key_id: str,
            actor: str, audit: AuditSink | None, randbytes: RandBytes) -> None:  # fmt: skip
    """Steps 2 to 5 of the module docstring, for the keyset already changed in memory."""
    if audit is not None:
        check_event(actor=actor, operation=operation, key_id=key_id)
    text = keyset_document(keyset, kek, randbytes=randbytes)
    audited = False
    try:
        with OutputSet() as outputs:
            with outputs.file(shared_file(path), mode=0o600) as temp:  # a link: its target
                temp.write_text(text, encoding="utf-8")
            if audit is not None:
                audit.append(actor=actor, operation=operation, key_id=key_id)
                audited = True
    except BaseException:
        if audited and audit is not None:  # the rename failed after the event was written
            with contextlib.suppress(Exception):
                audit.append(actor=actor, operation=f"{operation}-not-saved", key_id=key_id)
        raise


def create_keyset(path: str | Path, kek: KeyWrapper, *, actor: str, randbytes: RandBytes,
                  now: Clock, open_audit: AuditOpener = _unaudited) -> Keyset:  # fmt: skip
    """Create a keyset file at ``path`` with one primary key, audited as ``keys-create``.
    An existing file is never overwritten (UsageError)."""
    path = Path(path)
    with keyset_lock(path):
        if path.exists():
            raise UsageError("exists already; koble never overwrites a keyset", path=path)
        created = Keyset.create(randbytes=randbytes, now=now)
        with open_audit() as audit:
            _commit(created, path, kek, operation="keys-create", key_id=created.primary.key_id,
                    actor=actor, audit=audit, randbytes=randbytes)  # fmt: skip
    return created


def change_keyset(path: str | Path, kek: KeyWrapper, change: Change, version: int | None, *,
                  actor: str, randbytes: RandBytes, now: Clock,
                  open_audit: AuditOpener = _unaudited) -> Keyset:  # fmt: skip
    """Apply ``change`` (to key ``version``; none for ``rotate``) to the keyset file at
    ``path`` and return the keyset as saved; audited as ``keys-<change>``.

    Read, change, save and audit happen under the keyset's lock: a concurrent command waits
    and then reads what this one saved, so no change is lost.
    """
    path = Path(path)
    with keyset_lock(path):
        opened = load_keyset(path, kek)
        if change == "rotate":
            info = opened.rotate(randbytes=randbytes, now=now)
        else:
            if version is None:
                raise UsageError(f"{change} needs a key version")
            getattr(opened, change.replace("-", "_"))(version)
            info = opened.info(version)
        with open_audit() as audit:
            _commit(opened, path, kek, operation=f"keys-{change}", key_id=info.key_id,
                    actor=actor, audit=audit, randbytes=randbytes)  # fmt: skip
    return opened
