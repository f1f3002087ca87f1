"""Bad arguments get one line and exit 1, never a traceback; `--store` behaves alike in every
command that reads a store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from actserve.cli import app
from service.settings import BUNDLED_STORE

runner = CliRunner()


def one_line_error(arguments: list[str], code: int = 1) -> str:
    result = runner.invoke(app, arguments)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output and lines[0].startswith("error:"), result.output
    return result.output


@pytest.mark.parametrize(
    "content",
    [b"hello, not a checkpoint\n", b"\x80\x02}q\x00.", bytes(range(256)) * 8],
    ids=["text", "truncated-pickle", "binary"],
)
def test_checkpoint_inspect_on_a_non_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file.pth"
    path.write_bytes(content)
    output = one_line_error(["checkpoint", "inspect", str(path)])
    assert "not a readable PyTorch checkpoint" in output or "state dict" in output


def test_checkpoint_inspect_on_tensors_without_a_model(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    assert "not a state dict" in one_line_error(["checkpoint", "inspect", str(path)])


@pytest.mark.parametrize(
    "size", [["--width", "33"], ["--width", "0"], ["--height", "-4"], ["--width", "100000"]]
)
def test_demo_video_refuses_odd_zero_and_huge_sizes(tmp_path: Path, size: list[str]) -> None:
    out = tmp_path / "clip.mp4"
    output = one_line_error(["demo-video", "blinking", str(out), *size])
    assert f"{size[0]} {size[1]}" in output and "even number of pixels" in output
    assert not out.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["models", "list"],
        ["models", "show", "demo-actions"],
        ["batch", ".", "--model", "demo-actions", "--out", "o.jsonl"],
    ],
)
def test_a_missing_store_is_one_line_in_every_command(tmp_path: Path, command) -> None:
    missing = tmp_path / "nowhere"
    output = one_line_error([*command, "--store", str(missing)])
    assert f"no model store at {missing} (no such directory)" in output
    from_env = runner.invoke(app, command, env={"ACTSERVE_STORE": str(missing)})
    assert from_env.exit_code == 1 and "no model store at" in from_env.output


def test_reading_commands_default_to_the_bundled_store() -> None:
    listed = runner.invoke(app, ["models", "list"], env={"ACTSERVE_STORE": None})
    assert listed.exit_code == 0 and "demo-actions" in listed.output
    shown = runner.invoke(app, ["models", "show", "demo-actions"], env={"ACTSERVE_STORE": None})
    assert shown.exit_code == 0 and "integrity" in shown.output
    assert BUNDLED_STORE.is_dir()


def test_probe_checks_its_name_before_embedding(tmp_path: Path) -> None:
    data = tmp_path / "data"  # missing on purpose: the name is refused first
    store = str(tmp_path / "store")
    output = one_line_error(
        [
            "probe",
            "--base",
            "demo-actions",
            "--data",
            str(data),
            "--name",
            "../bad",
            "--store",
            store,
        ]
    )
    assert "invalid model name '../bad'" in output
