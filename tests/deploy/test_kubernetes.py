"""The Kubernetes manifests, rendered as `kubectl apply -k` would: valid against the Kubernetes
schemas (offline, kubernetes-validate), the ServiceMonitor and the prometheus-adapter rules
against structural schemas, and in agreement with the service (probes, port, settings, drain)
and with each other (Service ↔ pods ↔ ServiceMonitor, HPA ↔ adapter rule)."""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
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
from tests.deploy.images import check_openvino_cache_mount, final
from tests.deploy.kustomize import Resource, containers, load_documents, render

K8S = ROOT / "deploy" / "k8s"
VARIANTS = {"cpu": "cpu", "gpu": "cuda"}
#: Test ids: a bare `gpu` id would read as the `gpu` mark (tests/conftest.py) and be skipped.
IDS = [f"k8s-{variant}" for variant in VARIANTS]
#: The oldest Kubernetes the manifests are meant for, and the newest schema bundled.
KUBERNETES_VERSIONS = ("1.30", "1.37")
#: Labels the Prometheus Operator puts on every series it scrapes for a ServiceMonitor.
OPERATOR_TARGET_LABELS = {"namespace", "pod", "service", "endpoint", "container", "job", "instance"}

DURATION = {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
#: The ServiceMonitor fields these manifests use (monitoring.coreos.com/v1); anything else is
#: a typo here, even where the full CRD would accept it.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": LABELS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {"matchLabels": LABELS},
                },
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        },
    },
}
#: prometheus-adapter's discovery rules (`rules.custom` of its Helm chart).
ADAPTER_VALUES = {
    "type": "object",
    "required": ["prometheus", "rules"],
    "properties": {
        "prometheus": {
            "type": "object",
            "required": ["url", "port"],
            "properties": {
                "url": {"type": "string", "pattern": "^https?://"},
                "port": {"type": "integer"},
            },
        },
        "rules": {
            "type": "object",
            "required": ["custom"],
            "properties": {
                "default": {"type": "boolean"},
                "custom": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["seriesQuery", "resources", "name", "metricsQuery"],
                        "additionalProperties": False,
                        "properties": {
                            "seriesQuery": {"type": "string"},
                            "seriesFilters": {"type": "array"},
                            "resources": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "overrides": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "type": "object",
                                            "required": ["resource"],
                                            "properties": {"resource": {"type": "string"}},
                                        },
                                    },
                                    "template": {"type": "string"},
                                },
                            },
                            "name": {
                                "type": "object",
                                "required": ["matches"],
                                "additionalProperties": False,
                                "properties": {
                                    "matches": {"type": "string"},
                                    "as": {"type": "string"},
                                },
                            },
                            "metricsQuery": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


@cache
def rendered(variant: str) -> tuple[Resource, ...]:
    return tuple(render(K8S / variant))


def one(variant: str, kind: str) -> Resource:
    (found,) = [r for r in rendered(variant) if r["kind"] == kind]
    return found


def pod_spec(variant: str) -> dict[str, Any]:
    return one(variant, "Deployment")["spec"]["template"]["spec"]


def container(variant: str) -> dict[str, Any]:
    (found,) = pod_spec(variant)["containers"]
    return found


def env(variant: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(variant)["env"] if "value" in e}


def adapter_values() -> dict[str, Any]:
    return yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())


def store_loader() -> Resource:
    (pod,) = load_documents(K8S / "store-loader.yaml")
    return pod


# ------------------------------------------------------------------------------ schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_manifests_match_the_kubernetes_schemas(variant: str, version: str) -> None:
    kinds = set()
    for resource in [*rendered(variant), store_loader()]:
        kinds.add(resource["kind"])
        if resource["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked against SERVICE_MONITOR below
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(
                f"{resource['kind']}/{resource['metadata']['name']} {path}: {error.message}"
            )
    expected = {"Namespace", "PersistentVolumeClaim", "Deployment", "Service", "ServiceMonitor"}
    assert expected | {"HorizontalPodAutoscaler", "Pod"} == kinds


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_service_monitor_matches_its_schema(variant: str) -> None:
    jsonschema.validate(one(variant, "ServiceMonitor"), SERVICE_MONITOR)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m["spec"].update(endpoint=m["spec"].pop("endpoints")),
        lambda m: m["spec"]["endpoints"][0].update(interval="15 seconds"),
        lambda m: m.update(apiVersion="monitoring.coreos.com/v1beta1"),
    ],
)
def test_service_monitor_schema_catches_mistakes(mutate) -> None:
    monitor = copy.deepcopy(one("cpu", "ServiceMonitor"))
    mutate(monitor)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR)


def test_kubernetes_schema_catches_a_misspelt_probe() -> None:
    """The negative control of the schema check (strict: unknown fields fail)."""
    deployment = copy.deepcopy(one("cpu", "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# ------------------------------------------------------------------------------ the pods


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_pod_environment_is_valid_service_settings(variant: str) -> None:
    names = [e["name"] for e in container(variant)["env"]]
    assert len(names) == len(set(names)), "an env name given twice"
    settings = check_settings(env(variant))
    assert str(settings.store) == "/models"
    (threads,) = [e for e in container(variant)["env"] if e["name"] == "ACTSERVE_RUNTIME_THREADS"]
    field = threads["valueFrom"]["resourceFieldRef"]
    assert field["containerName"] == container(variant)["name"]
    assert field["resource"] == "limits.cpu" and "cpu" in container(variant)["resources"]["limits"]
    check_settings({"ACTSERVE_RUNTIME_THREADS": "4"})


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_probes_hit_the_service_routes_on_its_port(variant: str) -> None:
    spec = container(variant)
    port = check_settings(env(variant)).port
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    probes = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in probes.items():
        http = spec[probe]["httpGet"]
        assert http["path"] == path and path in routes()
        assert ports.get(http["port"], http["port"]) == port


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_grace_period_outlasts_the_drain(variant: str) -> None:
    command = container(variant)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    settings = check_settings(env(variant))
    budget = drain_budget_s(
        settings.drain_timeout_s,
        pre_stop_s=float(command[1]),
        drain_grace_s=settings.http.drain_grace_s,
    )
    assert pod_spec(variant)["terminationGracePeriodSeconds"] >= budget


#: ingress-nginx's default upstream keep-alive timeout (upstream-keepalive-timeout).
PROXY_KEEP_ALIVE_S = 60


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_pods_keep_connections_longer_than_the_proxy(variant: str) -> None:
    """A proxy reusing a connection the pod has just closed gets a reset (a 502 to its
    client): the side that closes idle connections must be the proxy."""
    assert check_settings(env(variant)).http.keep_alive_s > PROXY_KEEP_ALIVE_S


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_pods_run_the_image_user_with_a_read_only_root(variant: str) -> None:
    spec, image_variant = pod_spec(variant), VARIANTS[variant]
    (user,) = final(image_variant, "USER")
    uid, gid = (int(part) for part in user.value.split(":"))
    context = spec["securityContext"]
    assert context["runAsNonRoot"] and (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert container(variant)["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["mountPath"]: m for m in container(variant)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "uploads are spooled to /tmp"
    check_openvino_cache_mount(container(variant), spec["volumes"], VARIANTS[variant])
    store = mounts[str(check_settings(env(variant)).store)]
    assert store["readOnly"]
    claim = volumes[store["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == one(variant, "PersistentVolumeClaim")["metadata"]["name"]


def test_gpu_variant_requests_a_gpu_and_the_cuda_image() -> None:
    gpu, cpu = container("gpu"), container("cpu")
    resources = gpu["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
    assert check_settings(env("gpu")).runtime.device == "cuda"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec("gpu")["tolerations"])
    assert "nvidia.com/gpu" not in str(cpu["resources"]) and "tolerations" not in pod_spec("cpu")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert gpu["image"] == compose["actserve-gpu"]["image"] == "actserve:cuda"
    assert cpu["image"] == compose["actserve"]["image"] == "actserve:cpu"


def test_store_loader_mounts_the_store_writable() -> None:
    pod = store_loader()
    (loader,) = containers([pod])
    assert loader["image"] == container("cpu")["image"]
    (mount,) = loader["volumeMounts"]
    assert mount["mountPath"] == str(check_settings(env("cpu")).store)
    assert not mount.get("readOnly")
    (volume,) = pod["spec"]["volumes"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == one("cpu", "PersistentVolumeClaim")["metadata"]["name"]
    assert pod["metadata"]["namespace"] == one("cpu", "Deployment")["metadata"]["namespace"]


# ------------------------------------------------------------------------------ traffic


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_service_and_monitor_reach_the_pods_metrics(variant: str) -> None:
    deployment, service = one(variant, "Deployment"), one(variant, "Service")
    monitor = one(variant, "ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in container(variant)["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in port_names
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics" and endpoint["path"] in routes()
    assert parse_duration_s(endpoint["scrapeTimeout"]) <= parse_duration_s(endpoint["interval"])


# ------------------------------------------------------------------------------ autoscaling


def served_name(rule: dict[str, Any], series: str) -> str | None:
    """The custom metric name prometheus-adapter makes of `series` (Go regexp semantics:
    `matches` searched, `as` a replacement template, ${1} by default)."""
    pattern = re.compile(rule["name"]["matches"])
    if not pattern.search(series):
        return None
    template = rule["name"].get("as") or ("${1}" if pattern.groups == 1 else "${0}")
    return pattern.sub(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", template), series)


def adapter_rule(metric: str) -> dict[str, Any]:
    for rule in adapter_values()["rules"]["custom"]:
        if any(served_name(rule, s) == metric for s in promql.metric_names(rule["seriesQuery"])):
            return rule
    pytest.fail(f"no prometheus-adapter rule serves {metric}")


def test_adapter_values_match_their_schema() -> None:
    jsonschema.validate(adapter_values(), ADAPTER_VALUES)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_hpa_scales_on_decode_saturation_and_queue_depth_served_by_the_adapter(
    variant: str,
) -> None:
    hpa, deployment = one(variant, "HorizontalPodAutoscaler"), one(variant, "Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    targets = {}
    for metric in hpa["spec"]["metrics"]:
        assert metric["type"] == "Pods"
        targets[metric["pods"]["metric"]["name"]] = quantity(metric["pods"]["target"])
    assert set(targets) == {"actserve_decode_saturation", "actserve_queue_depth_views"}
    settings = check_settings(env(variant))
    batching, decode = settings.batching, settings.decode
    assert batching.max_batch_views <= targets["actserve_queue_depth_views"], "two batches"
    assert targets["actserve_queue_depth_views"] < batching.max_queue_views, (
        "scale out while the queue is still below the 429 bound"
    )
    max_pending = decode.max_pending or 4 * decode.workers
    assert 0 < targets["actserve_decode_saturation"] <= 1 < max_pending / decode.workers, (
        "scale out while decode workers are busy, before the backlog reaches its 429 bound"
    )
    for name in targets:
        rule = adapter_rule(name)
        assert not promql.problems(
            rule["seriesQuery"], exposed_series(), target_labels=OPERATOR_TARGET_LABELS
        )
        overrides = rule["resources"]["overrides"]
        assert {overrides[k]["resource"] for k in ("namespace", "pod")} == {"namespace", "pod"}
        for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert placeholder in rule["metricsQuery"]
        (series,) = promql.metric_names(rule["seriesQuery"])
        query = rule["metricsQuery"].replace("<<.Series>>", series)
        query = query.replace("<<.LabelMatchers>>", "").replace("<<.GroupBy>>", "namespace, pod")
        assert not promql.problems(query, exposed_series(), target_labels=OPERATOR_TARGET_LABELS)


def quantity(target: dict[str, Any]) -> float:
    """A Kubernetes quantity such as "64" or "800m" as a number."""
    text = str(target["averageValue"])
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
