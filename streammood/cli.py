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


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="streammood")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
