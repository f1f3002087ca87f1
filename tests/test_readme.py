"""The README's set-up commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md must open with a bash block holding the install and test commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    commands = readme_setup_commands()
    assert len(commands) == 2, commands
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    for command in commands:
        assert command in ci_lines, f"{command!r} is in the README but not in .ci/run"


def test_every_service_setting_is_documented() -> None:
    from service.settings import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [
        f"ACTSERVE_{name.upper()}"
        for name in Settings.flat_names()
        if f"`ACTSERVE_{name.upper()}`" not in readme
    ]
    assert not missing, f"README.md does not document {', '.join(missing)}"


def test_the_admin_examples_call_the_admin_endpoints(store_root) -> None:
    """Every admin URL the README's examples call is an endpoint of the app, and every admin
    endpoint has an example."""
    from tests.service.test_models_and_admin import admin_operations

    paths, _ = admin_operations(store_root)
    called = re.findall(r"127\.0\.0\.1:8000(/admin/[^\s\"?]+)", (ROOT / "README.md").read_text())
    patterns = {p: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$") for p in paths}
    unknown = [url for url in called if not any(t.match(url) for t in patterns.values())]
    assert not unknown, f"README calls admin URLs the app does not have: {unknown}"
    untried = [p for p, t in patterns.items() if not any(t.match(url) for url in called)]
    assert not untried, f"README has no example of {untried}"
