"""compose.yaml and the Dockerfile, checked by reading them (there is no Docker engine here):
the services exist, their commands and options exist in the real CLI, the environment points
the workers at the compose Redis, and every file the Dockerfile copies is in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from streammood.cli import app

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_REDIS_URL = "redis://redis:6379/0"
APP_SERVICES = ("capture", "infer", "subscriber")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def cli():
    """The real CLI as a click group (typer 0.29 vendors click: duck-typed here)."""
    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return group


def _command(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def test_services(compose):
    services = compose["services"]
    assert set(services) == {"redis", *APP_SERVICES}
    assert services["redis"]["image"].startswith("redis:7")
    assert "healthcheck" in services["redis"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_workers_build_from_the_repo_and_use_the_compose_redis(compose, name):
    service = compose["services"][name]
    assert service["build"] == "."
    assert service["environment"]["STREAMMOOD_REDIS_URL"] == COMPOSE_REDIS_URL
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    cmd = _command(service)
    if "--redis-url" in cmd:
        assert cmd[cmd.index("--redis-url") + 1] == COMPOSE_REDIS_URL


def test_infer_scales_out(compose):
    infer = compose["services"]["infer"]
    assert infer["deploy"]["replicas"] >= 2
    # a fixed container name or host port would make `--scale infer=N` fail
    assert "container_name" not in infer and "ports" not in infer


@pytest.mark.parametrize("name", APP_SERVICES)
def test_commands_and_options_exist_in_the_cli(compose, cli, name):
    cmd = _command(compose["services"][name])
    assert cmd[0] == "streammood"
    sub = cmd[1]
    if sub not in cli.commands:
        pytest.skip(f"'streammood {sub}' is not in streammood.cli yet (issue 4, lead's part)")
    command = cli.commands[sub]
    options = {o: p for p in command.params if p.param_type_name == "option"
               for o in (*p.opts, *p.secondary_opts)}
    args = cmd[2:]
    i = 0
    while i < len(args):
        token = args[i]
        assert token.startswith("--"), f"{name}: unexpected argument {token!r}"
        assert token in options, f"{name}: 'streammood {sub}' has no option {token}"
        if options[token].is_flag:
            i += 1
        else:
            assert i + 1 < len(args), f"{name}: {token} needs a value"
            i += 2


def test_capture_file_default_exists_in_the_data(compose, data_dir):
    cmd = _command(compose["services"]["capture"])
    path = cmd[cmd.index("--file") + 1]
    default = re.fullmatch(r"/data/\$\{CAPTURE_FILE:-(.+)\}", path)
    assert default, path
    assert (data_dir / default.group(1)).is_file()
    volume = compose["services"]["capture"]["volumes"][0]
    assert volume.endswith(":/data:ro")


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"
            assert src not in ignored, f"Dockerfile copies {src}, which .dockerignore excludes"
    assert any("pip install" in line and " ." in line for line in lines)
    assert any(line.startswith("FROM python:3.11") for line in lines)
