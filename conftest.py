"""Collects the code blocks of README.md and docs/*.md as tests (tests/docs/runner.py says
how each kind of block runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.docs import runner

ROOT = Path(__file__).resolve().parent


class _PythonBlocks(PythonCodeBlockParser):
    """Python blocks addressing the page's server (doctest blocks run as Sybil runs them)."""

    def __init__(self) -> None:
        super().__init__(doctest_optionflags=runner.FLAGS)
        self.codeblock_parser = CodeBlockParser("python", runner.run_python)


_docs = Sybil(
    parsers=[_PythonBlocks(), CodeBlockParser("console", runner.run_console), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    setup=runner.setup,
    teardown=runner.teardown,
    fixtures=["docs_servers"],
    name="docs",
).pytest()


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path == ROOT / "README.md" or file_path.parent == ROOT / "docs":
        return _docs(file_path, parent)
    return None


@pytest.fixture(scope="session")
def docs_servers() -> Iterator[runner.SharedServers]:
    servers = runner.SharedServers()
    yield servers
    servers.close()
