"""CLI options for using a remote pseudonym service instead of a local keyset."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from koble.errors import UsageError
from koble.pseudonym.client import ServiceClient

F = TypeVar("F", bound=Callable[..., object])
TOKEN = "KOBLE_SERVICE_TOKEN"


def remote_options(function: F) -> F:
    """``--remote``, ``--token-env``, ``--ca``, ``--client-cert`` and ``--client-key``."""
    file = click.Path(dir_okay=False, path_type=Path)
    options = [
        click.option("--remote", metavar="URL", help="Use the pseudonym service at URL."),
        click.option(
            "--token-env",
            default=TOKEN,
            show_default=True,
            help="Environment variable holding the service bearer token.",
        ),
        click.option("--ca", type=file, help="CA certificate that signed the service's."),
        click.option("--client-cert", type=file, help="Client certificate (mutual TLS)."),
        click.option("--client-key", type=file, help="Client certificate's private key."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def actor_only_for_local(function: F) -> F:
    """Make the ``--actor`` of the audit options optional on the command line; put this
    decorator above them. A remote service knows who calls from the credentials, so only
    the local path needs an actor, and checks it itself (:func:`require_actor`)."""
    for param in getattr(function, "__click_params__", []):
        if isinstance(param, click.Option) and param.name == "actor":
            param.required = False
    return function


def require_actor(actor: str | None) -> str:
    """The actor the local path records in its audit log."""
    if not actor:
        raise UsageError("give --actor (or set KOBLE_ACTOR): who runs this, for the audit log")
    return actor


def service_client(
    url: str, token_env: str, ca: Path | None, cert: Path | None, key: Path | None
) -> ServiceClient:
    """A client authenticated by client certificate or by the token in ``token_env``."""
    if (cert is None) != (key is None):
        raise UsageError("--client-cert and --client-key go together")
    token = os.environ.get(token_env)
    if cert is None and not token:
        raise UsageError(f"authenticate with --client-cert/--client-key or set {token_env}")
    if not url.startswith(("https://", "http://")):
        raise UsageError("--remote must be an https:// URL (http:// only for a loopback test)")
    return ServiceClient(
        url, token=token, cert=None if cert is None or key is None else (cert, key), ca=ca
    )
