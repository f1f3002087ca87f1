"""Render this repository's kustomizations as `kubectl apply -k` does, for the part of kustomize
they use: `resources` (files and directories), `namespace`, `images` and JSON 6902 `patches`.
Any other field fails the render, so a kustomization cannot grow past what the tests see."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}

Resource = dict[str, Any]


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Resource]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: kustomize fields the tests cannot render: {unsupported}"
    assert kustomization["kind"] == "Kustomization", directory
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        assert path.exists(), f"{directory}/kustomization.yaml: {entry} does not exist"
        resources += render(path) if path.is_dir() else load_documents(path)
    resources = copy.deepcopy(resources)
    if namespace := kustomization.get("namespace"):
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for container in containers(resources):
            set_image(container, image)
    for patch in kustomization.get("patches", []):
        apply_patch(resources, patch, directory)
    return resources


def containers(resources: list[Resource]) -> list[dict[str, Any]]:
    """The containers of Pods and of the pod templates of workloads."""
    found = []
    for resource in resources:
        spec = resource.get("spec", {})
        pod = spec if resource["kind"] == "Pod" else spec.get("template", {}).get("spec", {})
        for key in ("initContainers", "containers"):
            found += pod.get(key, [])
    return found


def set_image(container: dict[str, Any], image: dict[str, str]) -> None:
    """kustomize's images transformer: match on the name without tag or digest."""
    name = container["image"].split("@")[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if name != image["name"]:
        return
    tag = container["image"][len(name) :]
    new_name = image.get("newName", name)
    if "digest" in image:
        tag = "@" + image["digest"]
    elif "newTag" in image:
        tag = ":" + image["newTag"]
    container["image"] = new_name + tag


def apply_patch(resources: list[Resource], patch: dict[str, Any], directory: Path) -> None:
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    assert isinstance(operations, list), "only JSON 6902 patches (a list of operations)"
    target = patch["target"]
    assert set(target) <= {"kind", "name"}, f"unsupported patch target {target}"
    matched = [
        i
        for i, resource in enumerate(resources)
        if resource["kind"] == target.get("kind", resource["kind"])
        and resource["metadata"]["name"] == target.get("name", resource["metadata"]["name"])
    ]
    assert matched, f"patch target {target} matches no resource"
    for i in matched:
        resources[i] = jsonpatch.apply_patch(resources[i], operations)
