"""The `etl` command line: a thin click layer over the library modules."""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from etl import __version__, redact
from etl.cli.options import common_options

# Each command lives in its own module; the group imports them lazily so that `etl --help`
# and commands that need no database stay fast.
COMMANDS = {
    "schema": "etl.cli.schema:schema",
    "health": "etl.cli.health:health",
    "db": "etl.cli.db:db",
    "simulate": "etl.cli.simulate:simulate",
    "run": "etl.cli.run:run",
    "status": "etl.cli.status:status",
    "users": "etl.cli.users:users",
    "report": "etl.cli.report:report",
    "demo": "etl.cli.demo:demo",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="etl")
@common_options
def cli() -> None:
    """Dopplersky Workers: daily Bluesky account analytics into PostgreSQL.

    Example: etl schema apply && etl run
    """


def main() -> None:
    """Entry point: run the CLI, never letting a secret reach the terminal."""
    try:
        # Without standalone mode click returns, not raises, the code of a click.exceptions.Exit.
        code = cli.main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo("Error: " + redact.redact(exc.format_message()), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception:
        # An unexpected failure still must not print a password in its traceback.
        click.echo(redact.redact(traceback.format_exc()).rstrip(), err=True)
        sys.exit(1)
