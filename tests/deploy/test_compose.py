"""docker-compose.yml and what it mounts: the Compose schema, the service's settings, ports and
drain, the GPU profile, Prometheus' scrape config and Grafana's provisioning and dashboard,
whose every query must name series and labels the service's /metrics has."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.contract import (
    ROOT,
    check_settings,
    drain_budget_s,
    exposed_series,
    parse_duration_s,
    routes,
)
from tests.deploy.images import DOCKERFILES, exec_form, final, image_env

COMPOSE = ROOT / "docker-compose.yml"
STORE_OVERRIDE = ROOT / "deploy" / "compose.store.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "actserve.json"
#: Compose service → the image variant it builds.
SERVING = {"actserve": "cpu", "actserve-gpu": "cuda"}
#: Labels Prometheus adds to every scraped series (static targets).
TARGET_LABELS = {"instance", "job"}
#: SOURCE:TARGET[:MODE], where SOURCE may be an interpolation such as ${DIR:?message}.
SHORT_VOLUME = re.compile(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::([a-z,]+))?")


@cache
def compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(definition: dict[str, Any]) -> dict[str, str]:
    env = definition.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def bind_mounts(definition: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of the short-syntax volumes that are host paths."""
    found = []
    for volume in definition.get("volumes", []):
        match = SHORT_VOLUME.fullmatch(volume)
        assert match, f"not a short-syntax volume: {volume!r}"
        source, target, mode = match.groups()
        if source.startswith((".", "/", "$")):
            found.append((source, target, mode or "rw"))
    return found


def test_compose_files_match_the_compose_spec() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
            str(STORE_OVERRIDE),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ the service


@pytest.mark.parametrize(("name", "variant"), SERVING.items())
def test_serving_service_builds_its_image(name: str, variant: str) -> None:
    definition = service(name)
    assert definition["build"]["context"] == "."
    assert ROOT / definition["build"]["dockerfile"] == DOCKERFILES[variant]
    assert definition["image"] == f"actserve:{variant}"


@pytest.mark.parametrize(("name", "variant"), SERVING.items())
def test_serving_service_is_configured_by_settings(name: str, variant: str) -> None:
    definition = service(name)
    settings = check_settings(environment(definition))
    (mapping,) = definition["ports"]
    host_ip, _host_port, container_port = mapping.split(":")
    assert host_ip == "127.0.0.1", "publish on loopback; a proxy exposes the service"
    assert int(container_port) == settings.port
    (expose,) = final(variant, "EXPOSE")
    assert int(expose.value) == settings.port
    healthcheck = definition.get("healthcheck")
    if healthcheck is not None:  # the image's HEALTHCHECK applies unless overridden
        assert any(path in " ".join(healthcheck["test"]) for path in routes())


@pytest.mark.parametrize(("name", "variant"), SERVING.items())
def test_compiled_models_outlive_the_read_only_container(name: str, variant: str) -> None:
    definition = service(name)
    assert definition["read_only"]
    directory = image_env(variant)["ACTSERVE_OPENVINO_CACHE_DIR"]
    sources = {
        target: source for source, target in (v.split(":", 1) for v in definition["volumes"])
    }
    assert sources[directory] in compose()["volumes"], "a named volume: `up` again imports them"


@pytest.mark.parametrize("name", SERVING)
def test_stop_grace_period_outlasts_the_drain(name: str) -> None:
    definition = service(name)
    settings = check_settings({**image_env(SERVING[name]), **environment(definition)})
    grace = parse_duration_s(definition["stop_grace_period"])
    budget = drain_budget_s(settings.drain_timeout_s, drain_grace_s=settings.http.drain_grace_s)
    assert grace >= budget, (grace, settings.drain_timeout_s)


@pytest.mark.parametrize(("name", "variant"), SERVING.items())
def test_serving_service_bounds_its_connections(name: str, variant: str) -> None:
    image = check_settings(image_env(variant)).http
    served = check_settings({**image_env(variant), **environment(service(name))}).http
    assert served.limit_concurrency is not None
    assert served.limit_concurrency <= image.limit_concurrency


def test_cpu_service_runs_by_default_and_gpu_service_in_its_profile() -> None:
    cpu, gpu = service("actserve"), service("actserve-gpu")
    assert "profiles" not in cpu and "deploy" not in cpu
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device.get("count", 0) >= 1 or device.get("device_ids")
    assert check_settings(environment(gpu)).runtime.device == "cuda"
    assert check_settings(environment(cpu)).runtime.device != "cuda"
    assert "actserve" in gpu["networks"]["default"]["aliases"], "Prometheus scrapes `actserve`"


def test_bind_mounts_exist() -> None:
    for name, definition in compose()["services"].items():
        for source, _target, _mode in bind_mounts(definition):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_store_override_mounts_a_store_where_the_images_expect_it() -> None:
    override = compose(STORE_OVERRIDE)["services"]
    assert set(override) == set(SERVING)
    for name, definition in override.items():
        store = check_settings(environment(definition)).store
        ((source, target, mode),) = bind_mounts(definition)
        assert Path(target) == store
        assert source.startswith("${MODEL_STORE_DIR:?"), "a clear error when the path is unset"
        assert mode == "ro"
        (volume,) = final(SERVING[name], "VOLUME")
        assert target in exec_form(volume)


# ------------------------------------------------------------------------------ Prometheus


def test_prometheus_scrapes_the_metrics_route() -> None:
    prometheus = service("prometheus")
    mounts = {target: source for source, target, _ in bind_mounts(prometheus)}
    config_path = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    assert set(config) <= {"global", "scrape_configs", "rule_files", "alerting"}
    for key in ("scrape_interval", "evaluation_interval"):
        parse_duration_s(config["global"][key])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "actserve"
    assert job["metrics_path"] in routes() and job["metrics_path"] == "/metrics"
    hosts = {"actserve"} | {
        alias
        for name in SERVING
        for alias in service(name).get("networks", {}).get("default", {}).get("aliases", [])
    }
    (static,) = job["static_configs"]
    for target in static["targets"]:
        host, port = target.split(":")
        assert host in hosts
        for name in SERVING:
            assert int(port) == check_settings(environment(service(name))).port


# ------------------------------------------------------------------------------ Grafana


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    grafana = service("grafana")
    mounts = {target: ROOT / source for source, target, _ in bind_mounts(grafana)}
    provisioning = mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert parse_duration_s(source["jsonData"]["timeInterval"]) == parse_duration_s(
        yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["global"][
            "scrape_interval"
        ]
    ), "$__rate_interval must span the scrape interval"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "actserve.yml").read_text())[
        "providers"
    ]
    dashboards = provider["options"]["path"]
    assert mounts[dashboards] == DASHBOARD.parent
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(dashboards)
    assert (DASHBOARD.parent / Path(home).name).is_file()


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


def queries() -> list[tuple[str, str, str]]:
    """(panel title, expr, legend) of every query, template variables included."""
    found = [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in panels()
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"${variable['name']}", variable["definition"], ""))
    return found


def test_dashboard_queries_only_series_the_service_exposes() -> None:
    exposed = exposed_series()
    found = []
    for title, expr, legend in queries():
        if expr.startswith("label_values("):
            metric, label = expr.removeprefix("label_values(").rstrip(")").split(", ")
            expr = f"{metric}{{{label}!=''}}"
        problems = promql.problems(expr, exposed, legend=legend, target_labels=TARGET_LABELS)
        found += [f"{title}: {problem}" for problem in problems]
    assert not found, "\n".join(found)


def test_dashboard_answers_the_operators_questions() -> None:
    """Request rate, p50/p99 latency of every stage histogram, batch size, queue depth,
    rejections by reason, loaded versions: a new stage histogram must join the latency panels."""
    exprs = [expr for _title, expr, _legend in queries()]
    used = set().union(*(promql.metric_names(e) for e in exprs))
    stages = {name for name in exposed_series() if name.endswith("_duration_seconds_bucket")}
    for quantile in ("0.5", "0.99"):
        covered = {
            name
            for e in exprs
            if e.startswith(f"histogram_quantile({quantile},")
            for name in promql.metric_names(e)
        }
        assert stages <= covered, f"p{quantile} misses {stages - covered}"
    assert {
        "actserve_requests_total",
        "actserve_batch_size_views_bucket",
        "actserve_queue_depth_views",
        "actserve_rejections_total",
        "actserve_model_loaded",
    } <= used
    assert any("by (reason)" in e for e in exprs if "actserve_rejections_total" in e)


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    boxes = []
    for panel in panels():
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        for other in boxes:
            overlap_x = box["x"] < other["x"] + other["w"] and other["x"] < box["x"] + box["w"]
            overlap_y = box["y"] < other["y"] + other["h"] and other["y"] < box["y"] + box["h"]
            assert not (overlap_x and overlap_y), f"{panel['title']} overlaps another panel"
        boxes.append(box)
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_promql_check_catches_unknown_series_and_labels() -> None:
    """The negative control of the dashboard check."""
    exposed = exposed_series()
    assert promql.problems("rate(actserve_requests_total[1m])", exposed) == []
    assert promql.problems("rate(actserve_request_total[1m])", exposed)
    assert promql.problems("sum by (reason) (rate(actserve_requests_total[1m]))", exposed)
    assert promql.problems(
        "histogram_quantile(0.5, sum by (model) (rate(actserve_batch_size_views_bucket[1m])))",
        exposed,
    )
    assert promql.problems("x", exposed, legend="{{model}}")
