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
