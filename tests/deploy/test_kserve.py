"""The KServe InferenceService (deploy/kserve): its own fields against a structural schema of
the part of serving.kserve.io/v1beta1 it uses, its inline pod fields against the Kubernetes
schemas, and its agreement with the service (settings, port, OIP probe routes, drain) and with
the kustomize deployment (image user, store claim, namespace)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.contract import ROOT, check_settings, drain_budget_s, routes
from tests.deploy.images import check_openvino_cache_mount, final
from tests.deploy.kustomize import Resource, load_documents
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS, one

#: The component fields KServe adds to a predictor's inline pod spec (v1beta1
#: ComponentExtensionSpec) that these manifests use; the rest of the predictor is a PodSpec.
COMPONENT_FIELDS = {
    "minReplicas": {"type": "integer", "minimum": 0},
    "maxReplicas": {"type": "integer", "minimum": 1},
    "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
    "scaleTarget": {"type": "integer", "minimum": 1},
}
INFERENCE_SERVICE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "serving.kserve.io/deploymentMode": {
                            "enum": ["RawDeployment", "Serverless", "ModelMesh"]
                        }
                    },
                },
            },
        },
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {
                "predictor": {
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        **COMPONENT_FIELDS,
                        "containers": {"type": "array", "minItems": 1, "maxItems": 1},
                    },
                }
            },
        },
    },
}


def inference_service() -> Resource:
    (resource,) = load_documents(ROOT / "deploy" / "kserve" / "inferenceservice.yaml")
    return resource


def predictor() -> dict[str, Any]:
    return inference_service()["spec"]["predictor"]


def container() -> dict[str, Any]:
    (found,) = predictor()["containers"]
    return found


def env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"]}


def as_pod(service: Resource) -> Resource:
    """The predictor's inline PodSpec as the Pod Kubernetes would validate."""
    spec = {k: v for k, v in service["spec"]["predictor"].items() if k not in COMPONENT_FIELDS}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": spec}


def test_inference_service_matches_its_schema() -> None:
    jsonschema.validate(inference_service(), INFERENCE_SERVICE)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_predictor_pod_fields_match_the_kubernetes_schema(version: str) -> None:
    try:
        kubernetes_validate.validate(as_pod(inference_service()), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"predictor {'.'.join(str(p) for p in error.path)}: {error.message}")


def test_the_checks_catch_mistakes() -> None:
    """Negative controls: a misspelt component field and a misspelt probe field fail."""
    service = copy.deepcopy(inference_service())
    service["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(as_pod(service), KUBERNETES_VERSIONS[0], strict=True)
    service = copy.deepcopy(inference_service())
    service["spec"]["transformer"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, INFERENCE_SERVICE)


def test_the_container_serves_the_claims_store_with_valid_settings() -> None:
    variables = {k: v for k, v in env().items() if k.startswith("ACTSERVE_")}
    settings = check_settings(variables)
    assert container()["name"] == "kserve-container"
    assert str(settings.store) == "/mnt/models"  # where KServe's storage initializer mounts
    claim = one("cpu", "PersistentVolumeClaim")
    assert env()["STORAGE_URI"] == f"pvc://{claim['metadata']['name']}/"
    assert (
        inference_service()["metadata"]["namespace"] == one("cpu", "Namespace")["metadata"]["name"]
    )


def test_probes_hit_the_open_inference_protocol_health_routes_on_its_port() -> None:
    port = check_settings({"ACTSERVE_PORT": env()["ACTSERVE_PORT"]}).port
    (declared,) = container()["ports"]
    assert declared["containerPort"] == port
    probes = {
        "startupProbe": "/v2/health/live",
        "livenessProbe": "/v2/health/live",
        "readinessProbe": "/v2/health/ready",
    }
    for probe, path in probes.items():
        http = container()[probe]["httpGet"]
        assert http["path"] == path and path in routes(), probe
        assert http["port"] == port, probe


def test_grace_period_outlasts_the_drain_and_pods_run_the_image_user() -> None:
    drain = check_settings({"ACTSERVE_DRAIN_TIMEOUT_S": env()["ACTSERVE_DRAIN_TIMEOUT_S"]})
    assert predictor()["terminationGracePeriodSeconds"] >= drain_budget_s(drain.drain_timeout_s)
    (user,) = final("cpu", "USER")
    uid, gid = (int(part) for part in user.value.split(":"))
    context = predictor()["securityContext"]
    assert context["runAsNonRoot"] and (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert container()["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in predictor()["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "uploads are spooled to /tmp"
    check_openvino_cache_mount(container(), predictor()["volumes"])
