"""Where the CLI gets secrets from: passphrases, key-encryption keys, the audit signer.

This is the edge of the program, so it is the one place that reads environment variables,
key files and the clock; everything below receives them as arguments.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import click

from koble.errors import UsageError
from koble.path_checks import ensure_distinct
from koble.pseudonym.audit import AuditHead, AuditLog, AuditNotClosedError
from koble.pseudonym.keys import Keyset
from koble.pseudonym.keystore import KeyWrapper, PassphraseKek, RawKek, load_keyset
from koble.pseudonym.opening import opening
from koble.pseudonym.signing import Ed25519Signer
from koble.registries.identifiers.scan import check_name

F = TypeVar("F", bound=Callable[..., Any])
KEYSET_PASSPHRASE = "KOBLE_KEYSET_PASSPHRASE"
AUDIT_PASSPHRASE = "KOBLE_AUDIT_PASSPHRASE"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def randbytes(n: int) -> bytes:
    return os.urandom(n)


def kek_options(function: F) -> F:
    """``--passphrase-env``, ``--kek-file`` and ``--kek-env``: how to open a keyset file."""
    options = [
        click.option("--passphrase-env", default=KEYSET_PASSPHRASE, show_default=True,
                     help="Environment variable holding the keyset passphrase."),
        click.option("--kek-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="File with a 32-byte key-encryption key (raw, hex or base64)."),
        click.option("--kek-env", help="Environment variable with a base64 or hex 32-byte KEK."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _raw_key(text: bytes, where: str) -> bytes:
    if len(text) == 32:
        return text
    stripped = text.strip()
    for decode in (binascii.unhexlify, base64.b64decode):
        try:
            key = decode(stripped)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise UsageError(f"{where} does not hold a 32-byte key (raw, hex or base64)")


def resolve_kek(passphrase_env: str, kek_file: Path | None, kek_env: str | None) -> KeyWrapper:
    """The KEK named by the options: a key file, a key in the environment, or a passphrase."""
    if kek_file is not None:
        if not kek_file.is_file():
            raise UsageError(f"{kek_file}: no such key file")
        return RawKek(
            _raw_key(kek_file.read_bytes(), str(kek_file)), source=f"the key in {kek_file}"
        )
    if kek_env is not None:
        value = os.environ.get(kek_env)
        if not value:
            raise UsageError(f"environment variable {kek_env} is not set")
        return RawKek(
            _raw_key(value.encode(), f"environment variable {kek_env}"),
            source=f"the key from {kek_env}",
        )
    passphrase = os.environ.get(passphrase_env)
    if not passphrase:
        raise UsageError(
            f"no key-encryption key: set {passphrase_env} to the keyset passphrase, "
            "or pass --kek-file or --kek-env"
        )
    return PassphraseKek(passphrase.encode(), source=f"the passphrase from {passphrase_env}")


def open_keyset(path: Path, passphrase_env: str, kek_file: Path | None,
                kek_env: str | None) -> Keyset:  # fmt: skip
    return load_keyset(path, resolve_kek(passphrase_env, kek_file, kek_env))


def _actor(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--actor`` as given, refused (exit 2, naming the option) when empty or holding a
    person number: it is written into the audit log, which would refuse it only at the end."""
    return None if value is None else check_name(value, "--actor", what="an actor name")


def audit_options(*, required: bool) -> Callable[[F], F]:
    """``--actor``, ``--audit-log``, ``--audit-key`` and ``--audit-passphrase-env``."""

    def decorate(function: F) -> F:
        options = [
            click.option("--actor", envvar="KOBLE_ACTOR", required=True, callback=_actor,
                         help="Who runs this (recorded in the audit log) [env KOBLE_ACTOR]."),
            click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path),
                         required=required, envvar="KOBLE_AUDIT_LOG",
                         help="Audit log to append to [env KOBLE_AUDIT_LOG]."),
            click.option("--audit-key", type=click.Path(dir_okay=False, path_type=Path),
                         required=required, envvar="KOBLE_AUDIT_KEY",
                         help="Encrypted Ed25519 PEM signing checkpoints [env KOBLE_AUDIT_KEY]."),
            click.option("--audit-passphrase-env", default=AUDIT_PASSPHRASE, show_default=True,
                         help="Environment variable holding the audit key's passphrase."),
        ]  # fmt: skip
        checked = _audit_log_apart(function)
        for option in reversed(options):
            checked = option(checked)
        return checked

    return decorate


def _audit_log_apart(function: F) -> F:
    """``function`` refusing (exit 2, naming both options) an ``--audit-log`` that names
    another file of the command (``koble keys create K --audit-log K``): one would overwrite
    the other, and the audit record or the data would be lost while the command says done."""

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        command = click.get_current_context().command
        label = {p.name: p.human_readable_name if isinstance(p, click.Argument)
                 else max(p.opts, key=len) for p in command.params}  # fmt: skip
        others: dict[str, Path | None] = {}
        for name, value in kwargs.items():
            values = value if isinstance(value, tuple) else (value,)
            for one in values:
                if isinstance(one, Path) and name != "audit_log":
                    shown = label.get(name, name)
                    others[shown if len(values) == 1 else f"{shown} ({one})"] = one
        ensure_distinct({"--audit-log": kwargs.get("audit_log")}, others)
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]


def print_audit_head(head: AuditHead) -> None:
    """Tell the operator where a log ends once a command has closed it, on stderr.

    Recorded somewhere an attacker cannot change, the line lets ``koble audit verify-log
    --expect-head/--expect-entries`` catch a log later cut back to an earlier checkpoint.
    """
    click.echo(head.describe(), err=True)


class ClosingAudit(AbstractContextManager[AuditLog | None]):
    """The audit log of a command (or None), opened by ``opener`` on entry, whose closing
    checkpoint may fail only after the command's work is done.

    When the block succeeds and only the closing checkpoint cannot be written
    (:class:`AuditNotClosedError`), the error is held: the command prints its normal result
    and then calls :meth:`finish`, which raises it with ``done`` (what was saved) in front,
    so the operator learns that the work WAS done and is not tempted to repeat it (and rotate
    a keyset twice). When the block fails, its own error is raised, as by the log itself.
    """

    def __init__(self, opener: Callable[[], AuditLog | None], done: str) -> None:
        self._opener = opener
        self._done = done
        self._log: AuditLog | None = None
        self._failure: AuditNotClosedError | None = None

    def __enter__(self) -> AuditLog | None:
        self._log = self._opener()
        return self._log

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        if self._log is None:
            return
        if exc_type is not None:
            self._log.__exit__(exc_type, exc, traceback)
            return
        try:
            self._log.close()
        except AuditNotClosedError as failure:
            self._failure = failure

    def finish(self) -> None:
        """Raise the held closing failure (exit 2), saying what was done; else nothing."""
        if self._failure is not None:
            raise AuditNotClosedError(
                f"{self._done}; do not repeat the command. Only the audit log could not be "
                f"closed: {self._failure.message}",
                path=self._failure.path,
            )


def open_audit(log: Path | None, key: Path | None, passphrase_env: str) -> AuditLog | None:
    """The audit log named by the options, or None when none was asked for. Closing it
    prints its head and entry count (:func:`print_audit_head`)."""
    if log is None and key is None:
        return None
    if log is None or key is None:
        raise UsageError("--audit-log and --audit-key go together")
    if not key.is_file():
        raise UsageError(f"{key}: no such audit key file")
    passphrase = os.environ.get(passphrase_env)
    if not passphrase:
        raise UsageError(f"set {passphrase_env} to the audit key's passphrase")
    with opening("audit key", key, f"the passphrase from {passphrase_env}"):
        signer = Ed25519Signer.from_pem(key.read_bytes(), passphrase.encode())
    return AuditLog(log, signer, utc_now, on_close=print_audit_head)
