"""The documentation site: it builds strictly offline, its reference tables come from the code,
the README keeps the two commands CI runs, and every admin endpoint has a runnable example.
(The pages' code blocks themselves run through the root conftest.py: tests/docs/runner.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import docs_hooks
from service.errors import STATUS, ServiceError, all_codes, code_for, status_for
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


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


def test_the_readme_stays_short_and_links_every_page_it_names() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), link


def test_the_site_builds_strictly_and_offline(tmp_path: Path) -> None:
    """Strict: a broken link or anchor, a page missing from the nav or a bad generated table
    fails the build. The generated tables reach the built pages."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    configuration = (tmp_path / "configuration" / "index.html").read_text()
    assert "ACTSERVE_DECODE_WORKERS" in configuration
    assert "<!-- generated" not in configuration
    assert "decoder_crashed" in (tmp_path / "http-api" / "index.html").read_text()


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(entries: list) -> list[str]:
        found = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found.extend(pages(value) if isinstance(value, list) else [value])
        return found

    assert sorted(pages(config["nav"])) == sorted(p.name for p in DOCS.glob("*.md"))


# --------------------------------------------------------------------- the settings table


def test_every_setting_has_a_description() -> None:
    rows = docs_hooks.settings_rows()
    missing = [row["env"] for row in rows if not row["description"]]
    assert not missing, f"settings without a description= (the docs read it): {missing}"


def test_the_settings_table_names_exactly_the_variables_the_service_reads() -> None:
    documented = {row["env"] for row in docs_hooks.settings_rows()}
    assert len(documented) == len(docs_hooks.settings_rows()), "two fields share a name"
    flat = {name for name in Settings.env_names() if "__" not in name}
    assert documented == flat


@pytest.mark.parametrize(
    ("env", "value", "path"),
    [
        ("ACTSERVE_DECODE_WORKERS", "3", ("decode", "workers")),
        ("ACTSERVE_MAX_PIXELS", "1000", ("video", "max_pixels")),
        ("ACTSERVE_VIDEO_CODECS", "h264,vp9", ("video", "codecs")),
        ("ACTSERVE_MAX_CONCURRENT_UPLOADS", "7", ("admission", "max_uploads")),
        ("ACTSERVE_MAX_TOP_K", "9", ("max_top_k",)),
    ],
)
def test_a_documented_name_sets_its_field(monkeypatch, env, value, path) -> None:
    assert env in {row["env"] for row in docs_hooks.settings_rows()}
    default = _field(Settings(), path)
    monkeypatch.setenv(env, value)
    assert _field(Settings(), path) != default


def _field(settings: Settings, path: tuple[str, ...]) -> object:
    found: object = settings
    for attribute in path:
        found = getattr(found, attribute)
    return found


def test_the_settings_table_shows_types_and_defaults() -> None:
    table = docs_hooks.settings_table()
    assert "| `ACTSERVE_MAX_UPLOAD_BYTES` | int | 209,715,200 (200 MiB) |" in table
    assert "| `ACTSERVE_DECODER_THREADS` | int (optional) | unset |" in table
    assert "| `ACTSERVE_DEVICE` | auto \\| cpu \\| cuda | auto |" in table


# ----------------------------------------------------------------------- the status table


def test_the_status_table_covers_every_error_code() -> None:
    rows = docs_hooks.status_rows()
    codes = {code for _, code, _ in rows}
    framework = {"not_found", "method_not_allowed", "http_error", "internal_error"}
    framework.add(ServiceError.code)  # the base class, never raised itself
    assert set(all_codes()) - framework <= codes
    for cls in set(STATUS) - {ServiceError}:
        error = cls.__new__(cls)
        assert (status_for(error), code_for(error)) in {(s, c) for s, c, _ in rows}, cls
    assert all(when for _, code, when in rows if code != "bad_request"), rows


def test_the_status_table_follows_the_code() -> None:
    table = docs_hooks.status_table()
    assert "| 415 | `not_a_video` |" in table
    assert "| 429 | `overloaded` |" in table
    assert f"`{ServiceError.code}`" not in table  # the base class has no row of its own


# ------------------------------------------------------------------------- admin examples


def test_the_admin_examples_call_every_admin_endpoint(store_root) -> None:
    """Every admin URL the docs' examples call is an endpoint of the app, and every admin
    endpoint has an example (which the docs' runner executes)."""
    from tests.service.test_models_and_admin import admin_operations

    paths, _ = admin_operations(store_root)
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *DOCS.glob("*.md")])
    called = re.findall(r"127\.0\.0\.1:8000(/admin/[^\s\"?]+)", text)
    patterns = {p: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$") for p in paths}
    unknown = [url for url in called if not any(t.match(url) for t in patterns.values())]
    assert not unknown, f"the docs call admin URLs the app does not have: {unknown}"
    untried = [p for p, t in patterns.items() if not any(t.match(url) for url in called)]
    assert not untried, f"the docs have no example of {untried}"


def test_the_openapi_examples_name_models_that_exist() -> None:
    """The examples of /docs name the bundled model, not one nobody has."""
    from service.app import create_app

    document = create_app(Settings()).openapi()
    text = str(document)
    named = set(re.findall(r"'model': '([^']+)'", text))
    named |= {ref.split("@")[0] for ref in re.findall(r"'([\w.-]+@\d+)'", text)}
    known = {"demo-actions", "r3d_18"}  # the bundled model; a zoo model users export
    assert named and named <= known, named - known
