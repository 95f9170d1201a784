"""The documentation's code runs: Python blocks, and the curl and ml-server commands.

Each document (README.md, docs/*.md) is played from top to bottom in a temporary working
directory, as a reader would:

- a ```python block is executed in a fresh namespace, unless it is verbatim part of a file in
  examples/ (tests/test_examples.py runs those). A block whose first line is `# name.py` is
  also written to that file, for the commands after it. Statements from the first that would
  listen on a port (`waitress.serve(...)`, `waitress.create_server(...)`, `server.run()`) are
  compiled but not run;
- a ```sh, ```bash, ```shell or ```console block that uses curl or ml-server is run with
  bash. `ml-server serve` starts a real server (port 0, SQLite in the working directory) that
  later blocks talk to: http://127.0.0.1:8080 in the text is replaced by the address its
  start-up line gives. A block that needs a server before any was started gets the catalog
  (`ml-server serve`). Every curl must answer 2xx, or the status of the `# NNN` comment that
  follows it. Each server is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import pytest
import requests

from mlserver.catalog import ENTRIES
from mlserver.cli import main
from mlserver.config import Settings
from mlserver.http import App
from mlserver.store import SQLStore
from support import server_environment

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = {path: path.read_text() for path in sorted((ROOT / "examples").glob("*.py"))}
BIN = Path(sys.executable).parent

DOC_URL = "http://127.0.0.1:8080"
SHELLS = {"sh", "bash", "shell", "console"}
# Calls that listen on a port or serve forever (name.call): the statement holding the first
# one, and those after it, are compiled but not run.
SERVING = {("waitress", "serve"), ("waitress", "create_server"), ("server", "run")}
SERVICE_ROUTES = {"health", "ready", "models", "openapi.json", "v2", "ui"}
NONE = "\N{EN DASH}"  # what the docs' tables show in an empty cell

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
_STARTUP = re.compile(r"mlserver: serving (\d+) models on (http://\S+) \(store \S+\): (.*)")


@dataclasses.dataclass
class Block:
    """One fenced code block of a document."""

    document: str
    line: int
    language: str
    code: str

    def __str__(self) -> str:
        return f"{self.document}:{self.line} ({self.language})"


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of a document, in order."""
    text = path.read_text()
    name = str(path.relative_to(ROOT))
    return [
        Block(name, text.count("\n", 0, found.start()) + 1, found[1], found[2])
        for found in _FENCE.finditer(text)
    ]


def in_examples(code: str) -> Path | None:
    """The examples/ file that holds `code` verbatim (at any indentation), if one does."""
    code = code.strip("\n")
    for path, text in EXAMPLES.items():
        for depth in range(0, 17, 4):
            if textwrap.indent(code, " " * depth) in text:
                return path
    return None


def is_command_block(block: Block) -> bool:
    """A shell block this test runs: it calls curl or ml-server."""
    return (
        block.language in SHELLS
        and re.search(r"^\s*(\$ )?(\S+=\S+ )*(curl|ml-server)\b", block.code, re.M) is not None
    )


# -- servers --------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    """This process's environment without MLSERVER_ variables, with the venv first on PATH."""
    env = server_environment()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class Server:
    """An `ml-server serve` command from a document, run on a free port."""

    def __init__(self, command: str, workdir: Path) -> None:
        command = re.sub(r"(--port[ =]|MLSERVER_PORT=)\S+", r"\g<1>0", command)
        env = environment()
        if "--port" not in command and "MLSERVER_PORT=" not in command:
            env["MLSERVER_PORT"] = "0"
        self.command = command
        self.log = (workdir / "server.log").open("a")
        assignments, program = re.fullmatch(r"((?:\w+=\S+\s+)*)(.*)", command, re.S).groups()
        self.process = subprocess.Popen(
            ["bash", "-c", f"{assignments}exec {program}"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.startup = self._first_line(timeout=60)
        found = _STARTUP.fullmatch(self.startup)
        if found is None:
            self.process.kill()
            self.process.communicate()
            self.log.close()
            raise AssertionError(f"{command!r} did not start: {self.startup!r}")
        self.url = found[2]

    def _first_line(self, timeout: float) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline().rstrip("\n") if ready else ""

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C or a supervisor would: the server must stop cleanly."""
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=60)
        finally:
            self.log.close()
        assert self.process.returncode == 0, f"{self.command!r} exited {self.process.returncode}"
        assert out.splitlines()[-1] == "mlserver: stopped"


class Reader:
    """Plays one document's blocks in order, in its own working directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: Server | None = None
        self.ran: list[Block] = []
        self.examples: list[Block] = []

    def url(self) -> str:
        if self.server is None:
            self.start("ml-server serve")
        assert self.server is not None
        return self.server.url

    def start(self, command: str) -> Server:
        if self.server is not None:  # the reader stops one server before starting the next
            self.server.stop()
            self.server = None
        self.server = Server(command, self.workdir)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()

    def kill(self) -> None:
        if self.server is not None:
            self.server.process.kill()
            self.server.process.communicate()
            self.server.log.close()
            self.server = None

    # -- python ---------------------------------------------------------------------------

    def python(self, block: Block) -> None:
        if in_examples(block.code):
            self.examples.append(block)
            return
        code = block.code
        first = code.splitlines()[0] if code else ""
        if re.fullmatch(r"# [\w.-]+\.py", first):
            (self.workdir / first[2:]).write_text(code)
        if DOC_URL in code:
            code = code.replace(DOC_URL, self.url())
        compile(code, str(block), "exec")  # the whole block, serving calls included
        run = compile(_until_serving(code), str(block), "exec")
        namespace: dict[str, object] = {"__name__": "__docs__"}
        before = set(sys.modules)
        sys.path.insert(0, str(self.workdir))
        try:
            exec(run, namespace)
        finally:
            sys.path.remove(str(self.workdir))
            _close_resources(namespace)
            for name in set(sys.modules) - before:
                if str(self.workdir) in str(getattr(sys.modules[name], "__file__", "") or ""):
                    del sys.modules[name]
        self.ran.append(block)
        self._settle(block.code)

    # -- commands -------------------------------------------------------------------------

    def commands(self, block: Block) -> None:
        lines = _command_lines(block)
        script: list[str] = []
        expected_output: list[tuple[str, list[str]]] = []
        for command, output in lines:
            if re.search(r"(^|\s)ml-server serve\b", command):
                self._run(block, script)
                script = []
                server = self.start(command)
                _check_output(block, server.startup.replace(server.url, DOC_URL), output)
            else:
                script.append(command)
                expected_output.append((command, output))
        self._run(block, script, expected_output)
        self.ran.append(block)
        self._settle(block.code)

    def _run(
        self,
        block: Block,
        script: list[str],
        expected_output: list[tuple[str, list[str]]] | None = None,
    ) -> None:
        if not script:
            return
        text = "\n".join(script)
        if DOC_URL in text:
            text = text.replace(DOC_URL, self.url())
        headers = self.workdir / "headers"
        headers.mkdir(exist_ok=True)
        for old in headers.iterdir():
            old.unlink()
        prelude = (
            "set -euo pipefail\n"
            'curl() { command curl -sS -D "$DOCS_HEADERS/$(date +%s%N)" "$@"; }\n'
        )
        env = {**environment(), "DOCS_HEADERS": str(headers)}
        done = subprocess.run(
            ["bash", "-c", prelude + text],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{block} exited {done.returncode}: {done.stderr}"
        statuses = [_status(path) for path in sorted(headers.iterdir())]
        wanted = _expected_statuses("\n".join(script))
        assert len(statuses) == len(wanted), f"{block}: {len(statuses)} curl answers"
        for got, want, command in zip(statuses, wanted, _curls(script), strict=True):
            ok = (200 <= got < 300) if want is None else got == want
            assert ok, f"{block}: {command.strip()!r} answered {got}, expected {want or '2xx'}"
        if expected_output and len(expected_output) == 1:
            _check_output(block, done.stdout, expected_output[0][1])

    def _settle(self, code: str) -> None:
        """Wait until no key of the models the block used is RUNNING, as a reader would."""
        if self.server is None:
            return
        models = set(re.findall(r"127\.0\.0\.1:8080/([A-Za-z0-9._~-]+)", code)) - SERVICE_ROUTES
        models |= set(re.findall(r'ModelClient\([^,]+, "([^"]+)"\)', code))
        deadline = time.monotonic() + 30
        for model in sorted(models):
            while time.monotonic() < deadline:
                answer = requests.get(f"{self.server.url}/{model}", timeout=10)
                if answer.status_code != 200:
                    break
                if all(key["status"] != "RUNNING" for key in answer.json()["keys"]):
                    break
                time.sleep(0.05)


def _until_serving(code: str) -> str:
    """The top-level statements before the first one that starts serving."""
    lines = code.splitlines()
    for index, line in enumerate(lines):
        if any(re.search(rf"\b{name}\.{call}\(", line) for name, call in SERVING):
            # NOTE: text, not ast.parse: CPython 3.11 can raise a spurious SystemError
            # ("AST constructor recursion depth mismatch") when parsing to an AST here.
            start = index
            while start > 0 and (lines[start][:1].isspace() or not lines[start].strip()):
                start -= 1
            return "\n".join(lines[:start])
    return code


def _close_resources(namespace: dict[str, object]) -> None:
    """Close what a block left open: apps first (they wait for jobs), then stores and pools."""
    values = list(namespace.values())
    for value in values:
        if isinstance(value, Executor):
            value.shutdown(wait=True)
    for value in values:
        if isinstance(value, App):
            value.close()
    for value in values:
        if isinstance(value, SQLStore):
            value.close()


def _command_lines(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) pairs; an sh block is commands only."""
    if block.language != "console":
        return [(line, []) for line in _logical_lines(block.code)]
    pairs: list[tuple[str, list[str]]] = []
    lines = block.code.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith("$ "):
            if pairs:
                pairs[-1][1].append(line)
            continue
        command = line[2:]
        while command.endswith("\\") and index < len(lines):
            command += "\n" + lines[index]
            index += 1
        pairs.append((command, []))
    return pairs


def _logical_lines(code: str) -> list[str]:
    """Lines of a script with backslash continuations and open quotes joined."""
    joined: list[str] = []
    current = ""
    for line in code.splitlines():
        if not current and line.lstrip().startswith("#"):
            joined.append(line)  # a comment; its apostrophes are not quotes
            continue
        current = f"{current}\n{line}" if current else line
        if current.endswith("\\") or current.count("'") % 2:
            continue
        joined.append(current)
        current = ""
    if current:
        joined.append(current)
    return joined


def _curls(script: list[str]) -> list[str]:
    return [line for line in script if re.match(r"\s*(\S+=\S+ )*curl\b", line)]


def _expected_statuses(text: str) -> list[int | None]:
    """Per curl, the status its following `# NNN` comment names, or None (any 2xx)."""
    wanted: list[int | None] = []
    for line in text.splitlines():
        if re.match(r"\s*(\S+=\S+ )*curl\b", line):
            wanted.append(None)
        elif (found := re.match(r"\s*# (\d{3})\b", line)) and wanted and wanted[-1] is None:
            wanted[-1] = int(found[1])
    return wanted


def _status(path: Path) -> int:
    lines = [line for line in path.read_text().splitlines() if line.startswith("HTTP/")]
    return int(lines[-1].split()[1])


def _check_output(block: Block, actual: str, expected: list[str]) -> None:
    """Each shown output line starts an actual one ("…" ends a shortened line)."""
    got = actual.splitlines()
    for line in expected:
        if not line.strip():
            continue
        prefix = line.split("…")[0].rstrip()
        assert any(g.startswith(prefix) for g in got), f"{block}: no output line {line!r}"


# -- the tests ------------------------------------------------------------------------------


def test_every_code_block_has_a_language():
    """No block escapes the checks below for want of a language after its fence."""
    untagged = [str(b) for path in DOCUMENTS for b in blocks(path) if not b.language]
    assert untagged == []
    assert {b.language for path in DOCUMENTS for b in blocks(path)}.isdisjoint({"py", "python3"})


@pytest.fixture
def reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reader]:
    """A reader in an empty working directory; its server is stopped at the end."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("MLSERVER_")]:
        monkeypatch.delenv(name)
    reader = Reader(tmp_path)
    yield reader
    reader.kill()


@pytest.mark.slow
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_document_runs_from_top_to_bottom(path: Path, reader: Reader):
    """Every Python block runs or is part of an example, and every command block exits 0."""
    for block in blocks(path):
        if block.language == "python":
            reader.python(block)
        elif is_command_block(block):
            reader.commands(block)
    reader.close()
    python = [b for b in blocks(path) if b.language == "python"]
    commands = [b for b in blocks(path) if is_command_block(b)]
    assert {str(b) for b in python + commands} == {str(b) for b in reader.ran + reader.examples}


def test_example_blocks_come_from_tested_examples():
    """A Python block that is not executed is part of an example that test_examples.py runs."""
    tested = set(
        re.findall(r'run\("(\w+\.py)"\)', (ROOT / "tests" / "test_examples.py").read_text())
    )
    for path in DOCUMENTS:
        for block in blocks(path):
            source = in_examples(block.code) if block.language == "python" else None
            assert source is None or source.name in tested, f"{block}: {source}"


def test_guide_catalog_table_matches_the_catalog():
    """The guide's catalog table lists every built-in route with its estimator and PATCH."""
    text = (ROOT / "docs" / "guide.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| `([\w.]+)` \| (\w+) \| (.*?) \|$", text, re.M)
    documented = [(name, path, kind, update.strip("`")) for name, path, kind, update in rows]
    assert documented == [(e.name, e.import_path, e.kind, e.update or NONE) for e in ENTRIES]


def test_guide_documents_every_option_and_setting(capsys: pytest.CaptureFixture[str]):
    """Each `ml-server serve` flag and variable, and each Settings field, is in the guide."""
    assert main(["serve", "--help"]) == 0
    shown = capsys.readouterr().out
    flags = set(re.findall(r"(--[a-z][a-z-]+)", shown)) - {"--help", "--foo-bar"}
    variables = set(re.findall(r"\b(MLSERVER_[A-Z_]+[A-Z])\b", shown)) - {"MLSERVER_FOO_BAR"}
    text = (ROOT / "docs" / "guide.md").read_text()
    assert {"--store", "--executor", "MLSERVER_TARGET"} <= flags | variables
    assert sorted(f for f in flags if f not in text) == []
    assert sorted(v for v in variables if f"`{v}`" not in text) == []
    fields = [field.name for field in dataclasses.fields(Settings)]
    assert [name for name in fields if f"| `{name}` |" not in text] == []
    # ... and nothing else: no row for an option or a setting that is gone.
    rows = _table(text, "| flag | environment variable |")
    assert {f for row in rows for f in re.findall(r"--[a-z][a-z-]+", row)} <= flags
    settings = _table(text, "| `Settings` field |")
    assert [re.match(r"\| `(\w+)`", row)[1] for row in settings] == fields


def _table(text: str, header: str) -> list[str]:
    """The body rows of the Markdown table whose header row starts with `header`."""
    lines = text[text.index(header) :].splitlines()[2:]
    return [line for line in itertools.takewhile(lambda line: line.startswith("|"), lines)]
