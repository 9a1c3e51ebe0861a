"""Command-line interface: a thin typer layer. Each command parses options, calls one function
of the package and prints. Errors of the :class:`~streammood.errors.StreammoodError` family become
one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from streammood.errors import StreammoodError

app = typer.Typer(
    name="streammood",
    help="Real-time music mood tagging: valence, arousal and Russell quadrant every 500 ms, on Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn user-caused errors into a one-line message and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StreammoodError as exc:
            typer.echo(f"streammood: error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("streammood: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
def version() -> None:
    """Print the package version."""
    from streammood import __version__

    typer.echo(__version__)


@app.command()
@friendly_errors
def devices() -> None:
    """List sound input devices (index, name, channels, default rate)."""
    from rich.console import Console
    from rich.table import Table

    from streammood.audio.sources import list_input_devices

    found = list_input_devices()
    if not found:
        typer.echo("no input devices found")
        return
    table = Table("index", "name", "channels", "default rate (Hz)", "host API", "default")
    for d in found:
        table.add_row(
            str(d.index),
            d.name,
            str(d.channels),
            f"{d.default_rate:g}",
            d.hostapi,
            "*" if d.is_default else "",
        )
    Console().print(table)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="streammood")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
