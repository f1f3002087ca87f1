"""Settings come from ACTSERVE_* variables (or `actserve serve` options) and are validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from actserve.cli import app
from service.runtimes import RuntimeOptions
from service.settings import BUNDLED_STORE, Settings


def test_environment_variables_set_every_group(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ACTSERVE_STORE", str(tmp_path))
    monkeypatch.setenv("ACTSERVE_PRELOAD", "a, b")
    monkeypatch.setenv("ACTSERVE_MAX_BATCH_VIEWS", "48")
    monkeypatch.setenv("ACTSERVE_WARMUP_BATCH_SIZES", "1,8,max")
    monkeypatch.setenv("ACTSERVE_MAX_DURATION_S", "30")
    monkeypatch.setenv("ACTSERVE_ADMIN_TOKEN", "s3cret-xyz")
    settings = Settings()
    assert settings.store == tmp_path and settings.preload == ["a", "b"]
    assert settings.batching.resolved_warmup_sizes() == (1, 8, 48)
    assert settings.video.max_duration_s == 30
    assert settings.admin_token.get_secret_value() == "s3cret-xyz"
    assert "s3cret-xyz" not in repr(settings)


def test_actserve_runtime_names_the_runtime_beside_the_runtime_group(monkeypatch) -> None:
    """`runtime` is a settings group and ACTSERVE_RUNTIME its runtime's name: both work."""
    monkeypatch.setenv("ACTSERVE_RUNTIME", "openvino")
    monkeypatch.setenv("ACTSERVE_RUNTIME_THREADS", "1")
    monkeypatch.setenv("ACTSERVE_OPENVINO_HINT", "throughput")
    runtime = Settings().runtime
    assert (runtime.kind, runtime.threads, runtime.openvino_hint) == ("openvino", 1, "throughput")
    assert Settings(runtime="torchscript").runtime.kind == "torchscript"
    assert Settings(runtime={"threads": 2}).runtime.threads == 2
    assert Settings(runtime=RuntimeOptions(kind="onnxruntime")).runtime.kind == "onnxruntime"
    assert "ACTSERVE_RUNTIME" in Settings.env_names()


def test_defaults_serve_the_bundled_store_on_loopback(monkeypatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("ACTSERVE_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert settings.store == BUNDLED_STORE and settings.host == "127.0.0.1"
    assert settings.port == 8000 and settings.admin_token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACTSERVE_MAX_BATCH_VIEWS", "0"),
        ("ACTSERVE_DEVICE", "tpu"),
        ("ACTSERVE_PORT", "99999"),
        ("ACTSERVE_RUNTIME", "tensorrt"),
    ],
)
def test_invalid_values_are_refused(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_serve_refuses_unknown_or_invalid_settings() -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["serve", "--set", "max_batch=3"])
    assert unknown.exit_code == 2 and "KEY one of" in unknown.output
    invalid = runner.invoke(app, ["serve", "--set", "max_batch_views=-1"])
    assert invalid.exit_code == 2 and "invalid settings" in invalid.output
