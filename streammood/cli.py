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


@app.command()
@friendly_errors
def subscribe(
    source: str | None = typer.Option(None, "--source", help="Only this source id."),
    json_out: bool = typer.Option(False, "--json", help="Print each message's raw JSON."),
    history: int = typer.Option(0, "--history", min=0, help="First replay the last N messages."),
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="Redis URL (default: $STREAMMOOD_REDIS_URL, 127.0.0.1:6379, "
        "or the embedded server started by 'listen')."
    ),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after N messages."),
) -> None:
    """Print mood updates as they arrive on Redis."""
    from streammood.bus.subscriber import mood_line, watch

    def where(endpoint: object) -> None:
        typer.echo(f"streammood: {endpoint.describe()}", err=True)  # type: ignore[attr-defined]

    for msg in watch(redis_url, source, history, count, on_endpoint=where):
        typer.echo(msg.to_json() if json_out else mood_line(msg))


@app.command()
@friendly_errors
def features(
    audio: str = typer.Argument(..., help="Audio file (MP3, WAV, FLAC, OGG)."),
    out: str = typer.Option(..., "--out", help="Output .npz file."),
    mode: str = typer.Option(
        "offline", "--mode", help="offline (whole file) or stream (live path)."
    ),
) -> None:
    """Extract per-step features (MFCC, openSMILE LLD stats, mel patches) of a file to .npz."""
    from streammood.workers.features import write_features

    fs = write_features(audio, out, mode=mode, progress=sys.stderr.isatty())
    typer.echo(f"{out}: {fs.n_steps} steps ({mode})")


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="streammood")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
