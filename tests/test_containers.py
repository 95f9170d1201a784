"""The container files (Dockerfile, .dockerignore, compose.yaml), checked without an engine.

No container engine runs where the tests run. So the files are parsed and what they say is
checked against the package and the CLI, and the image's exact command (ENTRYPOINT + CMD, with
the image's ENV) is run as a local process and probed with the image's own HEALTHCHECK command.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from mlserver.cli import main
from support import server_environment

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli comes with pytest there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# The environment's scripts (ml-server, python, dask) come first on PATH, as in the image.
BIN = Path(sys.executable).parent
# Variables compose passes to the replicas that belong to a CLI option still on its way:
# allowed only while `serve --executor` has no `dask` choice (then they must be real).
DASK_VARIABLES = frozenset({"MLSERVER_SCHEDULER"})
INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})  # fmt: skip


# -- reading the files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword and the text after it, continuations joined."""

    keyword: str
    value: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, comments and blank lines dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # NOTE: Docker drops comment lines inside continuations too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, value = (pending + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), value.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return found


def stages(dockerfile: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each from its FROM to the next."""
    starts = [i for i, instruction in enumerate(dockerfile) if instruction.keyword == "FROM"]
    assert starts and starts[0] == 0, "the Dockerfile must start with FROM"
    return [dockerfile[a:b] for a, b in itertools.pairwise([*starts, len(dockerfile)])]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    """The one `keyword` instruction of `stage`."""
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the image, found {len(found)}"
    return found[0]


def exec_form(value: str) -> list[str]:
    """The argv of an exec-form (JSON array) ENTRYPOINT, CMD or HEALTHCHECK CMD."""
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        raise AssertionError(f"not exec form (a JSON array): {value}") from None
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), value
    return argv


def image_env(stage: list[Instruction]) -> dict[str, str]:
    """The variables the stage's ENV instructions set, in order."""
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword != "ENV":
            continue
        for word in shlex.split(instruction.value):
            name, equals, value = word.partition("=")
            assert equals, f"ENV {word}: use the key=value form"
            assert "$" not in value, f"ENV {word}: the tests cannot expand variables"
            env[name] = value
    return env


def healthcheck(stage: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (--interval=15s ...) and its command."""
    options, separator, command = only(stage, "HEALTHCHECK").value.partition("CMD ")
    assert separator, "HEALTHCHECK must run a command (HEALTHCHECK [OPTIONS] CMD [...])"
    flags = dict(option.lstrip("-").split("=", 1) for option in options.split())
    return flags, exec_form(command)


def copy_sources(stage: list[Instruction]) -> list[str]:
    """The build-context paths the stage's COPY instructions take (not those --from a stage)."""
    sources: list[str] = []
    for instruction in stage:
        words = instruction.value.split()
        if instruction.keyword == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w.rstrip("/").removeprefix("./") for w in words[:-1] if w[:2] != "--"]
    return sources


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` keep `path` out of the build context (last match wins)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # the path and parents
    ignored = False
    for raw in patterns:
        pattern = raw.removeprefix("!").strip("/")
        forms = [pattern, pattern.removeprefix("**/")]  # `**/` also matches zero directories
        if any(fnmatch.fnmatchcase(c, form) for c in candidates for form in forms):
            ignored = not raw.startswith("!")
    return ignored


def seconds(duration: str) -> float:
    """A Docker/compose duration (`15s`, `1m30s`, `500ms`) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` as compose reads it: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`."""
    environ = environ or {}

    def substitute(match: re.Match[str]) -> str:
        value = environ.get(match["name"])
        if value is None or (match["colon"] and not value):
            return match["default"] or ""
        return value

    pattern = r"\$\{(?P<name>\w+)(?:(?P<colon>:?)-(?P<default>[^}]*))?\}"
    return re.sub(pattern, substitute, text).replace("$$", "$")


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's `environment`, in map or list form, not yet interpolated."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {str(name): "" if value is None else str(value) for name, value in raw.items()}


def published(port: Any) -> tuple[str, int]:
    """(host port, container port) of a compose `ports` entry, short or long syntax."""
    if isinstance(port, Mapping):
        return str(port["published"]), int(port["target"])
    *host, container = str(port).split("/")[0].rsplit(":", 2)
    assert host, f"port {port!r} publishes no fixed host port"
    return host[-1], int(container)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions."""
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def image(dockerfile) -> list[Instruction]:
    """The final stage: what the image is."""
    return stages(dockerfile)[-1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    """pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml, as plain YAML (merge keys resolved)."""
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def replicas(compose) -> dict[str, dict[str, Any]]:
    """The ml-server services: built from the Dockerfile, outside any profile, entry point kept."""
    return {
        name: service
        for name, service in compose["services"].items()
        if "build" in service and not service.get("profiles") and "entrypoint" not in service
    }


@pytest.fixture
def serve_help(capsys, monkeypatch) -> str:
    """`ml-server serve --help`, one option per line."""
    monkeypatch.setenv("COLUMNS", "1000")
    assert main(["serve", "--help"]) == 0
    return capsys.readouterr().out


@pytest.fixture
def cli_variables(serve_help) -> set[str]:
    """Every MLSERVER_ variable `ml-server serve` reads, as its help names them."""
    return set(re.findall(r"\[env (MLSERVER_[A-Z0-9_]+)", serve_help))


# -- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_is_well_formed(dockerfile, image):
    """Every instruction is a Dockerfile keyword; the image has one ENTRYPOINT, CMD and USER."""
    assert {instruction.keyword for instruction in dockerfile} <= INSTRUCTIONS
    for keyword in ("ENTRYPOINT", "CMD", "USER", "HEALTHCHECK", "EXPOSE"):
        only(image, keyword)


def test_image_is_a_pinned_slim_python_the_package_supports(dockerfile, pyproject):
    """Every stage starts from the same python:3.X-slim, a minor requires-python allows."""
    bases = {only(stage, "FROM").value.split()[0] for stage in stages(dockerfile)}
    assert len(bases) == 1, f"stages start from different images: {bases}"
    (base,) = bases
    found = re.fullmatch(r"python:(3\.\d+)(\.\d+)?-slim(-\w+)?", base)
    assert found, f"{base} is not a python:3.X-slim image with its minor pinned"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(found[1])


def test_image_installs_the_wheel_with_declared_extras_and_no_cache(image, pyproject):
    """The image installs extras the package declares (postgres among them), without pip caches."""
    (extras,) = [i.value for i in image if i.keyword == "ARG" and i.value.startswith("EXTRAS=")]
    chosen = extras.removeprefix("EXTRAS=").strip("\"'").split(",")
    assert "postgres" in chosen
    assert set(chosen) <= set(pyproject["project"]["optional-dependencies"])
    installs = [i.value for i in image if i.keyword == "RUN" and "pip install" in i.value]
    assert len(installs) == 1 and "[${EXTRAS}]" in installs[0]
    for instruction in image:
        if instruction.keyword == "RUN" and re.search(
            r"\bpip (install|wheel)\b", instruction.value
        ):
            assert "--no-cache-dir" in instruction.value, instruction.value


def test_build_context_keeps_what_the_wheel_needs(dockerfile, pyproject):
    """The build copies pyproject's readme, license files and package dir, and .dockerignore
    keeps exactly those (and every module) while dropping .git, stores and build leftovers."""
    copied = [path for stage in stages(dockerfile) for path in copy_sources(stage)]
    project = pyproject["project"]
    needed = ["pyproject.toml", project["readme"], *project.get("license-files", [])]
    needed += pyproject["tool"]["setuptools"]["packages"]["find"]["where"]
    assert set(needed) <= set(copied), f"the build stage does not copy {set(needed) - set(copied)}"

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    modules = [str(p.relative_to(ROOT)) for p in (ROOT / "src").rglob("*.py")]
    kept = [*copied, *modules]
    assert [path for path in kept if dockerignored(path, patterns)] == []
    dropped = [
        ".git/HEAD",
        ".venv/bin/python",
        "mlserver.db",
        "build/lib/mlserver/old.py",
        "src/ml_server.egg-info/SOURCES.txt",
        "src/mlserver/__pycache__/cli.cpython-311.pyc",
        "tests/test_cli.py",
    ]
    assert [path for path in dropped if not dockerignored(path, patterns)] == []


def test_image_runs_as_a_non_root_user_owning_its_directories(image):
    """USER is a numeric non-root uid the image creates, owning WORKDIR and the SQLite directory."""
    user = only(image, "USER").value
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: use a numeric, non-root uid"
    runs = " ".join(i.value for i in image if i.keyword == "RUN")
    assert re.search(rf"useradd\b.*--uid {uid}\b", runs), f"no useradd creates uid {uid}"
    owned = re.search(r"chown \S+ ([^&;]+)", runs)
    assert owned, "no RUN chowns the user's directories"
    store = urllib.parse.urlsplit(image_env(image)["MLSERVER_STORE"])
    assert store.scheme == "sqlite", "the image's default store is a SQLite file"
    directories = {only(image, "WORKDIR").value, str(Path(store.path[1:]).parent)}
    assert directories <= set(owned[1].split())
    last_user = max(i for i, instruction in enumerate(image) if instruction.keyword == "USER")
    assert all(instruction.keyword != "RUN" for instruction in image[last_user:])


def test_image_command_is_the_console_script_serve(image, pyproject):
    """ENTRYPOINT + CMD is exactly `ml-server serve`, the package's console script."""
    entrypoint = exec_form(only(image, "ENTRYPOINT").value)
    command = exec_form(only(image, "CMD").value)
    assert [*entrypoint, *command] == ["ml-server", "serve"]
    assert pyproject["project"]["scripts"][entrypoint[0]] == "mlserver.cli:main"
    stop = [i.value for i in image if i.keyword == "STOPSIGNAL"]
    assert stop in ([], ["SIGTERM"]), "the CLI stops gracefully on SIGTERM"


def test_image_environment_is_cli_variables_on_the_exposed_port(image, cli_variables):
    """The image's MLSERVER_ variables are ones the CLI reads; it listens on all interfaces, on
    the port it EXPOSEs."""
    env = image_env(image)
    unknown = {name for name in env if name.startswith("MLSERVER_")} - cli_variables
    assert unknown == set(), f"`ml-server serve` reads no {unknown}"
    assert env["MLSERVER_HOST"] == "0.0.0.0"
    assert only(image, "EXPOSE").value.split() == [env["MLSERVER_PORT"]]


def test_healthcheck_gets_health_with_python_on_the_served_port(image):
    """The HEALTHCHECK runs Python (no curl in slim images) against /health on MLSERVER_PORT."""
    options, argv = healthcheck(image)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3, argv
    code = argv[2]
    compile(code, "HEALTHCHECK", "exec")
    assert "/health'" in code and "MLSERVER_PORT" in code and "ProxyHandler({})" in code
    assert seconds(options["timeout"]) < seconds(options["interval"])
    assert int(options["retries"]) >= 1


# -- compose.yaml --------------------------------------------------------------------------


def test_compose_postgres_is_pinned_healthchecked_and_persistent(compose):
    """postgres runs a pinned official image, checks itself with pg_isready and keeps its data
    in a named volume."""
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-\w+)?", postgres["image"]), postgres["image"]
    test = postgres["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else test
    env = environment_of(postgres)
    assert "pg_isready" in command
    assert f"--username={env['POSTGRES_USER']}" in command
    assert f"--dbname={env['POSTGRES_DB']}" in command
    volumes = [v.split(":")[0] for v in postgres["volumes"]]
    assert "/var/lib/postgresql" in " ".join(postgres["volumes"])
    assert volumes and set(volumes) <= set(compose["volumes"])


def test_compose_runs_two_replicas_of_the_image_after_postgres(compose, replicas):
    """mlserver-a, mlserver-b (and any more) run the image as is, once postgres is healthy."""
    assert {"mlserver-a", "mlserver-b"} <= set(replicas), sorted(replicas)
    for name, service in replicas.items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context).resolve() == ROOT, name
        assert isinstance(build, str) or build.get("dockerfile", "Dockerfile") == "Dockerfile"
        assert "command" not in service, f"{name} must run the image's `ml-server serve`"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        check = service.get("healthcheck", {})
        assert not check.get("disable") and "test" not in check, f"{name}: keep the image's"


def test_replica_store_urls_point_at_the_postgres_database(compose, replicas):
    """Each replica's MLSERVER_STORE is the postgres service's database, user and password,
    also when POSTGRES_PASSWORD comes from the host."""
    postgres = compose["services"]["postgres"]
    for environ in ({}, {"POSTGRES_PASSWORD": "s3cret"}):
        database = {k: interpolate(v, environ) for k, v in environment_of(postgres).items()}
        for name, service in replicas.items():
            url = interpolate(environment_of(service)["MLSERVER_STORE"], environ)
            parts = urllib.parse.urlsplit(url)
            assert parts.scheme in ("postgresql", "postgres", "postgresql+pool"), name
            assert (parts.hostname, parts.port or 5432) == ("postgres", 5432), name
            assert parts.path == "/" + database["POSTGRES_DB"], name
            assert parts.username == database["POSTGRES_USER"], name
            assert parts.password == database["POSTGRES_PASSWORD"], name


def test_replicas_publish_distinct_host_ports_to_the_served_port(compose, replicas, image):
    """No two services publish the same host port; each replica publishes its MLSERVER_PORT."""
    default_port = int(image_env(image)["MLSERVER_PORT"])
    hosts = [published(p)[0] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(hosts) == len(set(hosts)), f"host ports published twice: {hosts}"
    for name, service in replicas.items():
        served = int(environment_of(service).get("MLSERVER_PORT", default_port))
        assert [published(p)[1] for p in service["ports"]] == [served], name


def test_replica_environment_names_are_cli_variables(replicas, cli_variables, serve_help):
    """Every MLSERVER_ variable compose passes a replica is one `ml-server serve` reads."""
    executors = re.search(r"--executor \{([\w,]+)\}", serve_help)[1].split(",")
    pending = set() if "dask" in executors else DASK_VARIABLES
    assert "dask" not in executors or cli_variables >= DASK_VARIABLES, (
        "the CLI has a dask executor: compose must pass its scheduler variable"
    )
    for name, service in replicas.items():
        unknown = set(environment_of(service)) - cli_variables - pending
        assert unknown == set(), f"{name}: `ml-server serve` reads no {unknown}"


def test_replicas_get_longer_to_stop_than_the_graceful_timeout(replicas, image, serve_help):
    """stop_grace_period outlasts MLSERVER_GRACEFUL_TIMEOUT, so SIGTERM's drain is not killed."""
    default = re.search(r"MLSERVER_GRACEFUL_TIMEOUT; default ([\d.]+)", serve_help)[1]
    image_value = image_env(image).get("MLSERVER_GRACEFUL_TIMEOUT", default)
    for name, service in replicas.items():
        graceful = interpolate(environment_of(service).get("MLSERVER_GRACEFUL_TIMEOUT", ""))
        assert seconds(service["stop_grace_period"]) > float(graceful or image_value), name


@pytest.mark.slow
def test_dask_profile_runs_real_dask_commands_on_the_same_image(compose, replicas):
    """The dask profile's scheduler and worker run this image with `dask` commands and flags the
    installed distributed accepts, the worker pointed at the scheduler."""
    pytest.importorskip("distributed")
    services = compose["services"]
    dask = {name: s for name, s in services.items() if "dask" in s.get("profiles", [])}
    assert sorted(dask) == ["dask-scheduler", "dask-worker"]
    images = {service.get("image") for service in [*replicas.values(), *dask.values()]}
    assert len(images) == 1, f"the dask services must run the replicas' image: {images}"
    for name, service in dask.items():
        assert service["build"] == next(iter(replicas.values()))["build"], name
        assert service["entrypoint"] == ["dask"], name
        check = service["healthcheck"]
        assert check.get("disable") or "/health" not in " ".join(check["test"]), name
        subcommand, *args = service["command"]
        helped = subprocess.run(
            [str(BIN / "dask"), subcommand, "--help"], capture_output=True, text=True, timeout=30
        )
        assert helped.returncode == 0, helped.stderr
        for flag in (arg.split("=")[0] for arg in args if arg.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", helped.stdout), f"{name}: no {flag}"
    scheduler = dask["dask-scheduler"]["command"]
    port = scheduler[scheduler.index("--port") + 1]
    assert f"tcp://dask-scheduler:{port}" in dask["dask-worker"]["command"]
    assert dask["dask-worker"]["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"


# -- the image's command, run here -----------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def image_store(request, tmp_path) -> str:
    """A store for the image's command: a SQLite file, or the test PostgreSQL when it answers."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'models.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
def test_image_command_serves_health_and_stops_on_sigterm(image, image_store, tmp_path):
    """ENTRYPOINT + CMD with the image's ENV (only host, port and store changed) serves, passes
    the HEALTHCHECK command, exits 0 on SIGTERM, and then fails the HEALTHCHECK."""
    argv = exec_form(only(image, "ENTRYPOINT").value) + exec_form(only(image, "CMD").value)
    _, probe = healthcheck(image)
    env = server_environment(image_env(image))
    env.update(MLSERVER_PORT="0", MLSERVER_HOST="127.0.0.1", MLSERVER_STORE=image_store)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for program in (argv[0], probe[0]):
        assert shutil.which(program, path=env["PATH"]) == str(BIN / program), program

    # NOTE: an empty working directory, like the image's WORKDIR.
    work = tmp_path / "app"
    work.mkdir()
    server = subprocess.Popen(
        argv, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(60, server.kill)  # a hung start-up fails instead of hanging
    watchdog.start()
    try:
        line = server.stdout.readline()
        started = re.match(r"mlserver: serving \d+ models on http://127\.0\.0\.1:(\d+) ", line)
        assert started, f"did not start: {line!r} {server.stderr.read() if not line else ''}"
        probe_env = {**env, "MLSERVER_PORT": started[1]}
        healthy = subprocess.run(probe, env=probe_env, capture_output=True, text=True, timeout=10)
        assert healthy.returncode == 0, healthy.stderr

        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    assert out.splitlines()[-1] == "mlserver: stopped"
    assert "Traceback" not in err and "level=error" not in err, err

    gone = subprocess.run(probe, env=probe_env, capture_output=True, text=True, timeout=10)
    assert gone.returncode != 0, "the HEALTHCHECK passes with no server: it checks nothing"
