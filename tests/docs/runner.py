"""Runs the code blocks of README.md and docs/*.md (collected by the root conftest.py, with
Sybil).

The convention every page follows:

- A ```python block is executed; the blocks of one page share a namespace, in order. A block
  of `>>>` lines is a doctest: its output is compared.
- A ```console block is a shell session: each `$ ` line is run by bash (`> ` lines and a
  trailing backslash continue it) and what follows it, up to the next `$ ` line, is its
  expected output, compared as doctest does with ELLIPSIS (`...` matches anything) and
  NORMALIZE_WHITESPACE. A command shown without output is run, its output not compared.
  Every command must exit 0. `NAME=value` and `export NAME=value` lines set a variable for
  the rest of the page (evaluated once).
- `$ actserve serve ... &` starts that server for real, in the background, on a free port,
  and waits until it is ready; the page's later commands and Python blocks address it as
  http://127.0.0.1:8000 (rewritten to its port). A bare `actserve serve &` is one server shared
  by every page; a server with arguments or variables belongs to its page.
- Each page runs in a fresh temporary directory (so `clip.mp4` and `./store` are the page's
  own), with the checkout's virtual environment first on PATH.
- ```bash blocks are not run: they are for what cannot run here (installing, Docker,
  Kubernetes; tests/deploy checks those statically). `<!-- skip: next -->` on the line before
  a python or console block skips it; the text around it says why.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sybil import Example

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = "127.0.0.1:8000"
SHARED_SERVE = "actserve serve &"
ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
READY_TIMEOUT_S = 180
COMMAND_TIMEOUT_S = 300


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"  # rich's tables, as wide as a terminal
    env["TERM"] = "dumb"
    env.pop("ACTSERVE_URL", None)
    for name in [n for n in env if n.startswith("ACTSERVE_")]:
        env.pop(name)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """An `actserve serve` the docs started, in its own process group."""

    process: subprocess.Popen
    port: int
    log: Path

    @classmethod
    def start(cls, command: str, env: dict[str, str], cwd: Path) -> Server:
        """Start `command` on a free port; another on a port taken in the meantime (the port
        is chosen before the server binds it, and other tests bind ports too)."""
        for _ in range(3):
            server = cls._start(command, env, cwd)
            if server is not None:
                return server
        raise AssertionError(f"`{command}` found no free port in 3 tries")

    @classmethod
    def _start(cls, command: str, env: dict[str, str], cwd: Path) -> Server | None:
        port = free_port()
        log = Path(tempfile.mkstemp(prefix="docs-serve-", suffix=".log")[1])
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env={**env, "ACTSERVE_PORT": str(port)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = cls(process, port, log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = log.read_text(errors="replace")
                log.unlink(missing_ok=True)
                if "address already in use" in output.lower():
                    return None
                raise AssertionError(f"`{command}` exited:\n{output}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        server.stop()
        raise AssertionError(f"`{command}` was not ready in {READY_TIMEOUT_S} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.unlink(missing_ok=True)


class SharedServers:
    """The servers shared by every page (one per command), stopped at the session's end."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}

    def get(self, command: str, cwd: Path) -> Server:
        if command not in self.servers:
            self.servers[command] = Server.start(command.rstrip("& "), base_env(), cwd)
        return self.servers[command]

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()


@dataclass
class Page:
    """One page's state: its directory, variables and servers."""

    directory: Path
    shared: SharedServers | None = None
    env: dict[str, str] = field(default_factory=base_env)
    server: Server | None = None
    own: list[Server] = field(default_factory=list)

    def address(self, text: str) -> str:
        if self.server is None:
            return text
        return text.replace(DOCUMENTED, f"127.0.0.1:{self.server.port}")

    def close(self) -> None:
        for server in self.own:
            server.stop()


def setup(namespace: dict) -> None:
    directory = Path(tempfile.mkdtemp(prefix="docs-page-"))
    namespace["__page__"] = Page(directory)
    namespace["__name__"] = "__main__"  # a page's blocks run as a script
    namespace["__cwd__"] = os.getcwd()
    os.chdir(directory)


def teardown(namespace: dict) -> None:
    page: Page = namespace["__page__"]
    os.chdir(namespace["__cwd__"])
    page.close()
    shutil.rmtree(page.directory, ignore_errors=True)


def page_of(example: Example) -> Page:
    page: Page = example.namespace["__page__"]
    if page.shared is None:
        page.shared = example.namespace.get("docs_servers")
    return page


# ------------------------------------------------------------------------------ python


def run_python(example: Example) -> None:
    page = page_of(example)
    source = page.address(example.parsed)
    # Line numbers of tracebacks are the page's.
    code = compile("\n" * example.line + source, example.path, "exec")
    exec(code, example.namespace)


# ----------------------------------------------------------------------------- console


def commands(block: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    continuing = False
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
            continuing = line.endswith("\\")
        elif pairs and (continuing or line.startswith("> ")):
            text = line[2:] if line.startswith("> ") and not continuing else line
            pairs[-1] = (pairs[-1][0] + "\n" + text, pairs[-1][1])
            continuing = line.endswith("\\")
        elif pairs:
            pairs[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"console block: output before any `$ ` command: {line!r}")
    return [(command, "\n".join(output).strip("\n")) for command, output in pairs]


def run_console(example: Example) -> None:
    page = page_of(example)
    for command, expected in commands(example.parsed):
        name = assigned_name(command)
        if name:
            page.env[name] = shell(f'{command}\nprintf %s "${name}"', page)
            continue
        if command.rstrip().endswith("&"):
            start_server(command.strip(), page)
            continue
        output = shell(page.address(command), page)
        if page.server:
            output = output.replace(f"127.0.0.1:{page.server.port}", DOCUMENTED)
        if expected and not CHECKER.check_output(expected + "\n", output, FLAGS):
            raise AssertionError(
                f"$ {command}\n--- expected ---\n{expected}\n--- got ---\n{output}"
            )


def assigned_name(command: str) -> str | None:
    """NAME for a line that only sets a variable (`NAME=value`, `export NAME=value`)."""
    found = ASSIGNMENT.match(command.strip())
    if not found:
        return None
    try:
        words = shlex.split(without_substitutions(found.group(2)))
    except ValueError:
        return None
    return found.group(1) if len(words) == 1 else None


def without_substitutions(text: str) -> str:
    """`text` with each `$(...)` (nested parentheses included) replaced by one word."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith("$(", i):
            if depth == 0:
                out.append("x")
            depth, i = depth + 1, i + 2
            continue
        if depth and text[i] == "(":
            depth += 1
        elif depth and text[i] == ")":
            depth -= 1
        elif not depth:
            out.append(text[i])
        i += 1
    return "".join(out)


def shell(command: str, page: Page) -> str:
    env = dict(page.env)
    if page.server is not None:  # `actserve classify` and the client find the page's server
        env["ACTSERVE_URL"] = f"http://127.0.0.1:{page.server.port}"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=page.directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    output = done.stdout.decode(errors="replace")
    if done.returncode:
        raise AssertionError(f"$ {command}\nexited {done.returncode}:\n{output}")
    return output


def start_server(command: str, page: Page) -> None:
    if not command.startswith("actserve serve"):
        raise AssertionError(f"only `actserve serve ... &` may run in the background: {command}")
    own_env = {k: v for k, v in page.env.items() if base_env().get(k) != v}
    if command == SHARED_SERVE and not own_env and page.shared is not None:
        page.server = page.shared.get(command, page.directory)
        return
    page.server = Server.start(command.rstrip("& "), page.env, page.directory)
    page.own.append(page.server)
