"""The ``koble`` command: a click group whose subcommands live one module per group.

Commands only parse options, call the library and map errors. Every ``KobleError`` becomes a
one-line message on stderr and its exit code; an OS error (also inside a polars, pyarrow or
DuckDB error) a one-line message with what the OS said (exit 2); anything else a one-line
internal-error message with its digits redacted (exit 3), never a traceback, unless
``KOBLE_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

import koble.cli
from koble import __version__
from koble.errors import KobleError, redact, sanitise
from koble.files import os_failure

EXIT_INTERNAL = 3
#: An OS error koble did not catch itself (disk full, read-only directory, file-size limit):
#: the user's environment, not a bug, so a user error's exit code.
EXIT_ENVIRONMENT = 2


#: Subcommands, imported only when used so ``koble --help`` stays fast.
COMMANDS: dict[str, str] = {
    "ids": "koble.cli.ids:ids",
    "synth": "koble.cli.synth:synth",
    "demo": "koble.cli.demo:demo",
    "keys": "koble.cli.keys:keys",
    "pseudonymise": "koble.cli.pseudonym:pseudonymise",
    "reidentify": "koble.cli.pseudonym:reidentify",
    "rekey": "koble.cli.pseudonym:rekey",
    "serials": "koble.cli.pseudonym:serials",
    "audit": "koble.cli.audit:audit",
    "ingest": "koble.cli.ingest:ingest",
    "anonymity": "koble.cli.anonymity:anonymity",
    "registries": "koble.cli.registries:registries",
    "plan": "koble.cli.plan:plan",
    "run": "koble.cli.run:run",
    "serve": "koble.cli.serve:serve",
    "resolve": "koble.cli.resolve:resolve_command",
}


class KobleGroup(click.Group):
    """A click group with lazily imported subcommands that turns koble errors into one-line
    messages and exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attribute = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KobleError as exc:
            click.echo(f"koble: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.ClickException as exc:  # click quotes bad values: the same rules apply
            text = exc.format_message()
            if sanitise(text) == text:
                raise
            if isinstance(exc, click.UsageError):
                raise click.UsageError(sanitise(text), exc.ctx) from None
            raise click.ClickException(sanitise(text)) from None
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("KOBLE_DEBUG") == "1":
                raise
            reason = os_failure(exc)
            if reason is not None:  # disk full, read-only, size limit: the user's environment
                where = getattr(exc, "filename", None)
                line = reason if where is None else f"{reason}: {where}"
                click.echo(f"koble: error: {sanitise(redact(line))}", err=True)
                ctx.exit(EXIT_ENVIRONMENT)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            message = sanitise(redact(first))
            click.echo(f"koble: internal error ({type(exc).__name__}): {message}", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=KobleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="koble")
def cli() -> None:
    """koble: privacy-preserving linkage and pseudonymisation for Norwegian health registries."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (and ``python -m koble``'s): this process is the command
    (:data:`koble.cli.COMMAND_PROCESS`)."""
    koble.cli.COMMAND_PROCESS = True
    entry: Callable[..., Any] = cli.main
    try:
        entry(args=argv if argv is not None else sys.argv[1:], prog_name="koble")
    except KobleError as exc:
        click.echo(f"koble: error: {exc}", err=True)
        sys.exit(exc.exit_code)
