"""The durable-jobs overlay (deploy/k8s/jobs), rendered as `kubectl apply -k` would: valid
Kubernetes objects, a KEDA ScaledObject that counts the jobs table the service writes, workers
that run `actserve worker` with valid settings, and API pods and workers that share one
database and one uploads volume, with the workers kept out of the API Service."""

from __future__ import annotations

import re

import jsonschema
import kubernetes_validate
import pytest

from actserve.cli import app as cli
from service.jobs.db import JobRow
from service.jobs.queue import JobState
from tests.deploy.contract import ROOT, check_settings
from tests.deploy.images import check_openvino_cache_mount
from tests.deploy.kustomize import Resource, render

OVERLAY = ROOT / "deploy" / "k8s" / "jobs"
KEDA = ("keda.sh/v1alpha1",)

SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "kind": {"enum": ["ScaledObject", "TriggerAuthentication"]},
        "spec": {
            "type": "object",
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "triggers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata", "authenticationRef"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "postgresql"},
                            "metadata": {
                                "type": "object",
                                "required": ["query", "targetQueryValue"],
                                "additionalProperties": False,
                                "properties": {
                                    "query": {"type": "string"},
                                    "targetQueryValue": {"type": "string"},
                                    "activationTargetQueryValue": {"type": "string"},
                                },
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            },
                        },
                    },
                },
                "secretTargetRef": {"type": "array"},
            },
        },
    },
}


def resources() -> list[Resource]:
    return render(OVERLAY)


def one(kind: str, name: str) -> Resource:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def env_of(container: dict) -> dict[str, str]:
    """The container's settings; values from Secrets or the pod's resources as placeholders."""
    values = {}
    for item in container["env"]:
        if "value" in item:
            values[item["name"]] = item["value"]
        elif "secretKeyRef" in item:
            values[item["name"]] = "postgresql://user:secret@db:5432/actserve"
        else:
            values[item["name"]] = "4"
    return values


@pytest.mark.parametrize("version", ("1.30", "1.37"))
def test_the_overlay_is_valid_kubernetes(version: str) -> None:
    for resource in resources():
        if resource["apiVersion"].startswith(KEDA):
            jsonschema.validate(resource, SCALED_OBJECT)
        elif not resource["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(resource, version, strict=True)


def test_keda_counts_the_jobs_the_service_queues() -> None:
    (trigger,) = one("ScaledObject", "actserve-worker")["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    assert f"FROM {JobRow.__tablename__} " in query
    states = set(re.findall(r"'(\w+)'", query))
    assert states == {JobState.QUEUED.value, JobState.RUNNING.value}
    assert (
        one("ScaledObject", "actserve-worker")["spec"]["scaleTargetRef"]["name"]
        == (one("Deployment", "actserve-worker")["metadata"]["name"])
    )
    auth = one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (secret,) = auth["spec"]["secretTargetRef"]
    assert secret["parameter"] == "connection"


def test_workers_and_api_share_the_database_and_the_uploads() -> None:
    api = one("Deployment", "actserve")["spec"]["template"]["spec"]
    worker = one("Deployment", "actserve-worker")["spec"]["template"]["spec"]
    api_env, worker_env = env_of(api["containers"][0]), env_of(worker["containers"][0])
    api_settings, worker_settings = check_settings(api_env), check_settings(worker_env)
    assert api_settings.jobs.run is False and worker_settings.jobs.run is True
    assert api_settings.jobs.dir == worker_settings.jobs.dir
    secrets = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for spec in (api, worker)
        for item in spec["containers"][0]["env"]
        if item["name"] == "ACTSERVE_JOBS_DATABASE_URL"
    }
    assert len(secrets) == 1
    for spec, settings in ((api, api_settings), (worker, worker_settings)):
        claims = {
            v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]
        }
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert claims[mounts[str(settings.jobs.dir)]] == "actserve-jobs"
    volume = one("PersistentVolumeClaim", "actserve-jobs")
    assert volume["spec"]["accessModes"] == ["ReadWriteMany"]


def test_workers_run_the_worker_command_outside_the_api_service() -> None:
    worker = one("Deployment", "actserve-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["command"][:4] == ["tini", "--", "actserve", "worker"]
    assert "worker" in {command.name for command in cli.registered_commands}
    selector = one("Service", "actserve")["spec"]["selector"]
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()  # no HTTP traffic to a worker
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    check_openvino_cache_mount(container, worker["spec"]["template"]["spec"]["volumes"])
