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
    help="Real-time music mood tagging: valence, arousal and Russell quadrant every 500 ms, "
    "on Redis.",
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


CA_HELP = "CA certificate (PEM) that signed the Redis server's, for rediss:// URLs."
CERT_HELP = "Client certificate (PEM) for a Redis server that authenticates TLS clients."
KEY_HELP = "Private key (PEM) of --redis-cert-file."


def _tls_option(flag: str, help_text: str):
    env = {
        "--redis-ca-file": "STREAMMOOD_REDIS_CA_FILE",
        "--redis-cert-file": "STREAMMOOD_REDIS_CERT_FILE",
        "--redis-key-file": "STREAMMOOD_REDIS_KEY_FILE",
    }[flag]
    return typer.Option(None, flag, envvar=env, help=help_text)


def _tls(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """TLS files for every rediss:// connection of this command (see
    :func:`streammood.bus.connection.configure_tls`)."""
    from streammood.bus.connection import configure_tls

    configure_tls(ca_file, cert_file, key_file)


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
        None,
        "--redis-url",
        help="Redis URL (default: $STREAMMOOD_REDIS_URL, 127.0.0.1:6379, "
        "or the embedded server started by 'listen').",
    ),
    redis_ca_file: str | None = _tls_option("--redis-ca-file", CA_HELP),
    redis_cert_file: str | None = _tls_option("--redis-cert-file", CERT_HELP),
    redis_key_file: str | None = _tls_option("--redis-key-file", KEY_HELP),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after N messages."),
    prefix: str = typer.Option("streammood", "--prefix", help="Redis key prefix."),
) -> None:
    """Print mood updates as they arrive on Redis."""
    _tls(redis_ca_file, redis_cert_file, redis_key_file)
    from streammood.console import mood_line, watch

    def where(endpoint: object) -> None:
        typer.echo(f"streammood: {endpoint.describe()}", err=True)  # type: ignore[attr-defined]

    import time

    for msg in watch(redis_url, source, history, count, prefix, on_endpoint=where):
        # live lines show the delay since capture (captured_at) as seen here
        typer.echo(msg.to_json() if json_out else mood_line(msg, now=time.time()))


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


# --- shared option helpers -------------------------------------------------------------------

REDIS_HELP = (
    "Redis URL, e.g. redis://:PASSWORD@host:6379/0 (default: $STREAMMOOD_REDIS_URL, then "
    "127.0.0.1:6379, then an embedded server)."
)
MODEL_HELP = "Model artifact folder (default: $STREAMMOOD_MODEL, else the shipped model)."


def _setup_logging(verbose: bool = False) -> None:
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=_stderr(), show_path=False, show_time=True)],
        force=True,
    )


def _stderr():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _device_arg(device: str | None) -> int | str | None:
    return int(device) if device is not None and device.strip().isdigit() else device


def _default_source_id(device: str | None, file: str | None) -> str:
    import re
    from pathlib import Path

    raw = Path(file).stem if file else f"device-{device if device is not None else 'default'}"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._") or "source"
    return cleaned[:64]


TAKEOVER_HELP = (
    "Take the source over from a running producer with the same --source-id (with --sources: "
    "every source of the file; its frames or moods are refused from then on) instead of "
    "refusing to start."
)


def _open_session(endpoint, prefix: str, sid: str, takeover: bool):
    """``(client, ProducerSession)``: the source's producer lease, or one line and exit 2 when
    another producer holds it (the caller's ``with``/``finally`` closes the rest)."""
    import redis

    from streammood.bus.connection import RedisUnavailableError, connect, redact_url
    from streammood.bus.sessions import open_session

    client = None
    try:
        client = connect(endpoint.url)
        session = open_session(client, prefix, sid, takeover=takeover)
    except redis.exceptions.RedisError as exc:
        if client is not None:
            client.close()
        raise RedisUnavailableError(
            f"Redis at {redact_url(endpoint.url)} failed to open the producer session of "
            f"'{sid}' ({type(exc).__name__})"
        ) from None
    except BaseException:
        if client is not None:
            client.close()
        raise
    _stderr().print(f"streammood: {session.describe()}")
    return client, session


def _close_session(client, prefix: str, session) -> None:
    from streammood.bus.sessions import close_session

    close_session(client, prefix, session)
    client.close()


def _open_live(
    device: str | None,
    file: str | None,
    realtime: bool,
    source_id: str | None,
    model: str | None,
    redis_url: str | None,
    *,
    start_redis: bool,
):
    """What ``listen`` and ``capture`` both need, checked in the order that fails cheapest:
    ``(source id, model artifact, Redis endpoint, audio source)``."""
    from streammood.audio.sources import open_source
    from streammood.bus.embedded import ensure_redis
    from streammood.bus.keys import validate_source
    from streammood.runtime.artifact import load_artifact

    sid = validate_source(source_id or _default_source_id(device, file))
    artifact = load_artifact(model)
    endpoint = ensure_redis(redis_url, start=start_redis)
    _stderr().print(f"streammood: {endpoint.describe()}")
    try:
        source = open_source(device=_device_arg(device), file=file, realtime=realtime)
    except BaseException:
        endpoint.close()
        raise
    return sid, artifact, endpoint, source


SOURCES_HELP = "A sources.toml of [[source]] tables (id + device, file or url): many sources."
URL_HELP = "A stream URL (Icecast/Shoutcast MP3 or AAC, HLS, RTMP, UDP), decoded by ffmpeg."


def _run_many(
    command: str,
    sources: str | None,
    url: str | None,
    device: str | None,
    file: str | None,
    source_id: str | None,
    model: str | None,
    redis_url: str | None,
    duration: float | None,
    prefix: str,
    show: Callable[..., None] | None,
    takeover: bool = False,
) -> None:
    """``listen``/``capture`` with ``--sources`` or ``--url``: every source in this process
    (:func:`streammood.workers.many.run_many`), each under its own producer session. Exit 2
    (one line) when a source was refused or fenced, once the others have finished."""
    from pathlib import Path

    from streammood.audio.mux import SourceSpec, load_sources
    from streammood.bus.connection import connect
    from streammood.bus.embedded import ensure_redis
    from streammood.bus.keys import validate_source
    from streammood.runtime.artifact import load_artifact
    from streammood.workers.many import run_many

    if device is not None or file is not None or (sources and url):
        raise StreammoodError("give --sources, --url, --device or --file: one of them")
    if sources:
        if source_id:
            raise StreammoodError("--source-id is for one source; ids come from the sources file")
        specs = load_sources(sources)
        name = validate_source(f"{command}-{Path(sources).stem}"[:64].rstrip("-._") or command)
    else:
        sid = validate_source(source_id or "url")
        specs, name = [SourceSpec(id=sid, kind="url", target=url)], sid
    for spec in specs:
        validate_source(spec.id)
    artifact = load_artifact(model)
    err = _stderr()
    endpoint = ensure_redis(redis_url, start=command == "listen")
    err.print(f"streammood: {endpoint.describe()}")
    err.print(
        f"streammood: {command} {len(specs)} source(s) ({', '.join(s.id for s in specs)}) with "
        f"{artifact.name} v{artifact.version}"
    )
    if command == "listen":
        from streammood.bus.moods import MoodPublisher

        publisher = MoodPublisher(endpoint.url, prefix, metrics_id=name)
        kwargs: dict[str, Any] = {"moods": publisher, "on_message": show}
    else:
        from streammood.bus.frames import FramePublisher

        publisher = FramePublisher(endpoint.url, prefix, metrics_id=name)
        kwargs = {"frames": publisher}
    client = None
    try:
        client = connect(endpoint.url)
        stats = run_many(
            specs,
            artifact,
            duration=duration,
            client=client,
            prefix=prefix,
            takeover=takeover,
            report=lambda line: err.print(f"streammood: {line}"),
            **kwargs,
        )
    finally:
        pub = publisher.close(timeout=10.0)
        if client is not None:
            client.close()
        endpoint.close()
    for sid, s in stats.sources.items():
        device = (
            f"{s.overflows} input overflows, {s.underflows} underflows, "
            if s.overflows or s.underflows
            else ""
        )
        err.print(
            f"streammood: {sid}: {s.steps} steps, {s.gaps} gaps ({s.gap_steps} steps), "
            f"{s.reconnects} reconnects, {device}{s.dropped_s:.1f} s of audio dropped, {s.state}"
        )
    err.print(
        f"streammood: {stats.steps} steps, {pub.published} published, {pub.dropped} dropped "
        f"while Redis was away; {stats.patches} patches in {stats.embed_calls} embedding calls"
    )
    lost = [f"{sid} {s.state.split(':')[0]}" for sid, s in stats.sources.items()
            if s.state.startswith(("refused", "fenced"))]  # fmt: skip
    if lost:
        raise StreammoodError(
            f"source(s) held or taken over by another producer session: {', '.join(lost)} "
            "(stop that producer, or pass --takeover)"
        )


# --- live tagging ----------------------------------------------------------------------------


@app.command()
@friendly_errors
def listen(
    device: str | None = typer.Option(None, "--device", "-d", help="Input device index or name."),
    file: str | None = typer.Option(None, "--file", "-f", help="Tag an audio file instead."),
    sources: str | None = typer.Option(None, "--sources", help=SOURCES_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
    realtime: bool = typer.Option(False, "--realtime", help="Pace a file in real time."),
    redis_url: str | None = typer.Option(None, "--redis-url", help=REDIS_HELP),
    redis_ca_file: str | None = _tls_option("--redis-ca-file", CA_HELP),
    redis_cert_file: str | None = _tls_option("--redis-cert-file", CERT_HELP),
    redis_key_file: str | None = _tls_option("--redis-key-file", KEY_HELP),
    source_id: str | None = typer.Option(None, "--source-id", help="Source id in messages."),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    duration: float | None = typer.Option(None, "--duration", min=0, help="Stop after S seconds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live line per step."),
    prefix: str = typer.Option("streammood", "--prefix", help="Redis key prefix."),
    takeover: bool = typer.Option(False, "--takeover", help=TAKEOVER_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Tag live audio every 500 ms and publish the mood on Redis."""
    _tls(redis_ca_file, redis_cert_file, redis_key_file)
    from streammood.bus.moods import MoodPublisher
    from streammood.console import listen_line
    from streammood.workers.listen import run_listen
    from streammood.workers.tagging import MoodStage, feature_stage

    _setup_logging(verbose)
    err = _stderr()
    if sources or url:
        from streammood.console import mood_line

        def line(msg, _stats) -> None:
            if not quiet:
                typer.echo(mood_line(msg))

        _run_many(
            "listen", sources, url, device, file, source_id, model, redis_url, duration, prefix,
            line, takeover,
        )  # fmt: skip
        return
    sid, artifact, endpoint, source = _open_live(
        device, file, realtime, source_id, model, redis_url, start_redis=True
    )
    err.print(
        f"streammood: tagging {source.name} ({source.sample_rate} Hz) as '{sid}' with "
        f"{artifact.name} v{artifact.version}; channel {prefix}:mood, history {prefix}:mood:{sid}"
    )
    publisher = MoodPublisher(endpoint.url, prefix, metrics_id=sid)
    client = session = None

    def show(msg, stats) -> None:
        if not quiet:
            typer.echo(listen_line(msg, stats, publisher.stats))

    try:
        with source:
            features = feature_stage(artifact, source.sample_rate)
            with features:
                mood = MoodStage(artifact, sid)
                client, session = _open_session(endpoint, prefix, sid, takeover)
                publisher.bind(session)
                mood.start_session(session.session, session.seq0, session.t0)
                stats = run_listen(
                    source, features, mood, publisher, duration=duration, on_message=show
                )
    finally:
        pub = publisher.close(timeout=10.0)
        if session is not None:
            _close_session(client, prefix, session)
        endpoint.close()
    err.print(
        f"streammood: {stats.steps} steps tagged, {pub.published} messages published, "
        f"{pub.dropped} dropped while Redis was away, {stats.dropped_steps} steps dropped "
        f"(inference behind), {stats.overflows} audio overflows, {stats.dropped_blocks} audio "
        "blocks dropped"
    )


@app.command()
@friendly_errors
def capture(
    device: str | None = typer.Option(None, "--device", "-d", help="Input device index or name."),
    file: str | None = typer.Option(None, "--file", "-f", help="Capture an audio file instead."),
    sources: str | None = typer.Option(None, "--sources", help=SOURCES_HELP),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
    realtime: bool = typer.Option(False, "--realtime", help="Pace a file in real time."),
    redis_url: str | None = typer.Option(None, "--redis-url", help=REDIS_HELP),
    redis_ca_file: str | None = _tls_option("--redis-ca-file", CA_HELP),
    redis_cert_file: str | None = _tls_option("--redis-cert-file", CERT_HELP),
    redis_key_file: str | None = _tls_option("--redis-key-file", KEY_HELP),
    source_id: str | None = typer.Option(None, "--source-id", help="Source id of the frames."),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    duration: float | None = typer.Option(None, "--duration", min=0, help="Stop after S seconds."),
    prefix: str = typer.Option("streammood", "--prefix", help="Redis key prefix."),
    takeover: bool = typer.Option(False, "--takeover", help=TAKEOVER_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Capture audio and publish feature frames to Redis for 'infer' workers."""
    _tls(redis_ca_file, redis_cert_file, redis_key_file)
    from streammood.bus.frames import FramePublisher
    from streammood.workers.capture import run_capture
    from streammood.workers.tagging import feature_stage

    _setup_logging(verbose)
    err = _stderr()
    if sources or url:
        _run_many(
            "capture", sources, url, device, file, source_id, model, redis_url, duration, prefix,
            None, takeover,
        )  # fmt: skip
        return
    sid, artifact, endpoint, source = _open_live(
        device, file, realtime, source_id, model, redis_url, start_redis=False
    )
    err.print(f"streammood: capturing {source.name} as '{sid}' → {prefix}:frames:{sid}")
    publisher = FramePublisher(endpoint.url, prefix, metrics_id=f"capture-{sid}"[:64])
    client = session = None
    try:
        with source, feature_stage(artifact, source.sample_rate) as features:
            client, session = _open_session(endpoint, prefix, sid, takeover)
            sent = run_capture(
                source,
                features,
                artifact.embedder_id,
                sid,
                publisher,
                duration=duration,
                session=session,
            )
    finally:
        pub = publisher.close(timeout=10.0)
        if session is not None:
            _close_session(client, prefix, session)
    err.print(f"streammood: {sent} frames captured, {pub.published} written, {pub.dropped} dropped")


@app.command()
@friendly_errors
def infer(
    redis_url: str | None = typer.Option(None, "--redis-url", help=REDIS_HELP),
    redis_ca_file: str | None = _tls_option("--redis-ca-file", CA_HELP),
    redis_cert_file: str | None = _tls_option("--redis-cert-file", CERT_HELP),
    redis_key_file: str | None = _tls_option("--redis-key-file", KEY_HELP),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    source: list[str] = typer.Option(None, "--source", help="Only these source ids (repeat)."),
    prefix: str = typer.Option("streammood", "--prefix", help="Redis key prefix."),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after N messages."),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", min=0, help="Stop after S seconds without frames."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per message."),
    dead_letter_after: int = typer.Option(
        60,
        "--dead-letter-after",
        min=0,
        help="Give a source up after N quarantined frames in a row (0: never).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Consume feature frames of all (or some) sources and publish moods; scale by running more."""
    _tls(redis_ca_file, redis_cert_file, redis_key_file)
    from streammood.bus.connection import connect
    from streammood.bus.embedded import ensure_redis
    from streammood.bus.frames import default_worker_id
    from streammood.bus.moods import MoodPublisher
    from streammood.console import mood_line
    from streammood.runtime.artifact import load_artifact
    from streammood.workers.infer import run_infer

    _setup_logging(verbose)
    err = _stderr()
    artifact = load_artifact(model)
    endpoint = ensure_redis(redis_url, start=False)
    worker = default_worker_id()
    err.print(
        f"streammood: {endpoint.describe()}; model {artifact.name} v{artifact.version}; "
        f"worker {worker} (metrics {prefix}:metrics:{worker})"
    )
    client = connect(endpoint.url, timeout=5.0)
    publisher = MoodPublisher(client, prefix, metrics_id=worker, fence_worker=worker)
    try:
        stats = run_infer(
            client,
            artifact,
            publisher,
            prefix=prefix,
            sources=source or None,
            max_messages=count,
            idle_timeout=idle_timeout,
            on_message=None if quiet else (lambda m: typer.echo(mood_line(m))),
            worker_id=worker,
            dead_letter_after=dead_letter_after or None,
        )
    finally:
        publisher.close(timeout=10.0)
        client.close()
    dead = f", dead-lettered: {', '.join(stats.dead_letter)}" if stats.dead_letter else ""
    err.print(
        f"streammood: {stats.published} moods published, {stats.rejected} frames rejected, "
        f"{stats.replayed} replayed{dead}"
    )


# --- offline ---------------------------------------------------------------------------------


@app.command()
@friendly_errors
def analyze(
    audio: list[str] = typer.Argument(..., help="Audio files."),
    out: str | None = typer.Option(None, "--out", help="Timeline .csv or .json."),
    plot: str | None = typer.Option(
        None, "--plot", help="Trajectory PNG (one file: this path; several: NAME-<file>.png)."
    ),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1, help="Processes (all cores)."),
) -> None:
    """Offline mood timeline of audio files (same features and model as 'listen'; no Redis)."""
    from pathlib import Path

    from streammood.runtime.artifact import load_artifact
    from streammood.training.plots import plot_trajectory
    from streammood.workers.analyze import analyze_files, write_timelines

    artifact = load_artifact(model)
    err = _stderr()
    timelines, errors = analyze_files(
        audio, artifact, jobs, on_done=lambda p, r: err.print(f"  {p}: {_summary(r)}")
    )
    if out:
        write_timelines(timelines, Path(out))
        err.print(f"streammood: timeline of {len(timelines)} file(s) written to {out}")
    if plot:
        for t in timelines:
            target = Path(plot)
            if len(timelines) > 1:
                target = target.with_name(f"{target.stem}-{Path(t.path).stem}{target.suffix}")
            plot_trajectory(
                t.t_start, t.valence, t.arousal, t.probs, target, title=Path(t.path).name
            )
            err.print(f"streammood: trajectory picture {target}")
    for e in errors:
        typer.echo(f"streammood: error: {e}", err=True)
    if errors:
        raise typer.Exit(2 if not timelines else 1)


def _summary(result: object) -> str:
    from collections import Counter

    if isinstance(result, str):
        return f"failed: {result}"
    q = Counter(x for x in result.quadrants if x is not None)  # type: ignore[attr-defined]
    n = sum(q.values())
    bad = result.invalid_steps  # type: ignore[attr-defined]
    invalid = f" ({bad} steps without a valid model output, written as null)" if bad else ""
    if not n:
        return "no complete step" + invalid
    mix = ", ".join(f"{k} {v / n:.0%}" for k, v in q.most_common())
    return f"{n} steps; {mix}{invalid}"


@app.command()
@friendly_errors
def train(
    dataset: str = typer.Option(..., "--dataset", help="4q or deam."),
    data_dir: str = typer.Option(..., "--data-dir", help="The data set's folder."),
    out: str = typer.Option(..., "--out", help="Model artifact folder to write."),
    task: str = typer.Option("classification", "--task", help="classification or regression."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Ensemble members (one seed each)."),
    distill: bool = typer.Option(
        True,
        "--distill/--no-distill",
        help="Ship one student distilled from the ensemble (one sequence core per step), "
        "or the ensemble itself.",
    ),
    refit_all: bool = typer.Option(
        False,
        "--refit-all/--no-refit-all",
        help="After the test evaluation, train the shipped model once more on every song "
        "(test songs included); the reported test figures stay those of its held-out twin.",
    ),
    epochs: int = typer.Option(200, "--epochs", min=1, help="Most epochs (early stopping)."),
    patience: int = typer.Option(20, "--patience", min=1, help="Early-stopping patience."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the train/val/test split."),
    test_size: float = typer.Option(
        0.2, "--test-size", min=0, max=0.5, help="Share of songs held out for test (0: none)."
    ),
    val_size: float = typer.Option(
        0.2, "--val-size", min=0.05, max=0.5, help="Share of the rest for validation."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Model name (default streammood-DATASET)."
    ),
    version: str = typer.Option("1", "--version", help="Model version."),
    stream_augment: bool = typer.Option(
        False,
        "--stream-augment/--no-stream-augment",
        help="Also train on windows begun mid-song and on pairs of songs spliced at random steps "
        "(per-step targets: the song playing).",
    ),
    streams: bool = typer.Option(
        False,
        "--streams/--no-streams",
        help="Also play the test songs back to back (hard cuts, 4 s crossfades) through the live "
        "path and put the figures in the card (4q).",
    ),
    embedder: str | None = typer.Option(
        None,
        "--embedder",
        help="LiteRT embedder of the features, shipped in the artifact (default: the shipped "
        "model's musicnn; e.g. a student from scripts/distill_embedder.py).",
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1, help="Extraction processes."),
) -> None:
    """Train a model on a labelled data set (split by artist) and write the artifact."""
    import json
    from pathlib import Path

    from streammood.training.quiet import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow's import (run_train imports it, after extraction)
    from streammood.training.config import TrainConfig
    from streammood.training.modelconfig import ModelConfig
    from streammood.training.pipeline import run_train

    config = TrainConfig(
        task=task,
        seeds=tuple(range(seeds)),
        distill=distill,
        refit=refit_all,
        split_seed=split_seed,
        epochs=epochs,
        test_size=test_size,
        val_size=val_size,
        patience=patience,
        stream_augment=stream_augment,
        model=ModelConfig(task=task),
    )
    result = run_train(
        dataset,
        Path(data_dir),
        Path(out),
        config,
        command=" ".join(["streammood", *sys.argv[1:]]),
        name=name,
        version=version,
        cache_dir=Path(cache_dir) if cache_dir else None,
        jobs=jobs,
        streams=streams,
        embedder=Path(embedder) if embedder else None,
    )
    from streammood.training.metrics import format_report

    if result["test"]:
        typer.echo(format_report(result["test"]))
    typer.echo(json.dumps({"artifact": result["artifact"]}))


@app.command()
@friendly_errors
def evaluate(
    dataset: str = typer.Option(..., "--dataset", help="4q or deam."),
    data_dir: str = typer.Option(..., "--data-dir", help="The data set's folder."),
    report: str = typer.Option("report", "--report", help="Folder for metrics.json and PNGs."),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    include_seen: bool = typer.Option(
        False, "--include-seen", help="Also score songs the model was trained on."
    ),
    test_split: bool = typer.Option(
        False, "--test-split", help="Only the songs of the model's recorded test split."
    ),
    stream: bool = typer.Option(
        False, "--stream", help="Also play the songs back to back through the live path."
    ),
    xfade: float = typer.Option(
        0.0, "--xfade", min=0, max=10, help="Crossfade between songs with --stream, s."
    ),
    stream_seed: int = typer.Option(0, "--stream-seed", help="Seed of the song order and gains."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1, help="Extraction processes."),
) -> None:
    """Evaluate a model on a labelled data set: metrics.json, confusion matrix, VA plane (and,
    with --stream, the figures of songs played back to back and a stream timeline)."""
    from pathlib import Path

    from streammood.training.quiet import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow's import (run_evaluate imports it, after extraction)
    from streammood.training.metrics import format_report
    from streammood.training.pipeline import run_evaluate

    result = run_evaluate(
        dataset,
        Path(data_dir),
        Path(report),
        Path(model) if model else None,
        include_seen=include_seen,
        test_split=test_split,
        stream=stream,
        xfade=xfade,
        stream_seed=stream_seed,
        cache_dir=Path(cache_dir) if cache_dir else None,
        jobs=jobs,
    )
    typer.echo(format_report(result))
    if "stream" in result:
        from streammood.training.streams import format_stream_evaluation

        typer.echo(format_stream_evaluation(result["stream"]))
    typer.echo(f"report written to {report}/metrics.json")


@app.command()
@friendly_errors
def dashboard(
    redis_url: str | None = typer.Option(None, "--redis-url", help=REDIS_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one)."),
    token: str | None = typer.Option(
        None, "--token", envvar="STREAMMOOD_DASHBOARD_TOKEN", help="Secret for page and feed."
    ),
    prefix: str = typer.Option("streammood", "--prefix", help="Redis key prefix."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Serve the live mood dashboard in the browser (every source, live over SSE)."""
    from streammood.dashboard.server import serve

    _setup_logging(verbose)

    def ready(plan) -> None:
        typer.echo(f"streammood: {plan.redis_note}", err=True)
        if plan.warning:
            typer.echo(f"streammood: {plan.warning}", err=True)
        typer.echo(f"streammood: dashboard at {plan.url} (Ctrl-C to stop)", err=True)

    serve(redis_url, host, port, token, prefix, on_ready=ready)


@app.command()
@friendly_errors
def osc(
    target: str = typer.Option(..., "--target", help="OSC receiver, HOST:PORT (UDP)."),
    source: list[str] | None = typer.Option(None, "--source", help="Only this source (repeat)."),
    smooth: float = typer.Option(0.0, "--smooth", min=0, help="Smoothing time constant, s."),
    redis_url: str | None = typer.Option(None, "--redis-url", help=REDIS_HELP),
    prefix: str = typer.Option("streammood", "--prefix", help="Redis key prefix."),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after N moods."),
) -> None:
    """Forward every mood to OSC: /streammood/{source}/valence, /arousal, /quadrant, /probs."""
    from streammood.bus.live import find_redis
    from streammood.osc import parse_target, run_bridge

    host_port = parse_target(target)
    url, note = find_redis(redis_url)
    typer.echo(f"streammood: {note}", err=True)

    def state(up: bool) -> None:
        typer.echo(
            f"streammood: {'forwarding moods' if up else 'Redis away, retrying'} "
            f"({prefix}:mood -> osc.udp://{target})",
            err=True,
        )

    try:
        stats = run_bridge(
            url, prefix, host_port, sources=source, smooth=smooth, on_state=state, count=count
        )
    except KeyboardInterrupt:
        return
    typer.echo(f"streammood: {stats.moods} moods forwarded, {stats.sent} OSC messages", err=True)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="streammood")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
