"""The images' definitions as the tests read them: the Dockerfiles split into stages, and the
pinned dependency locks with the requirements they were made from."""

from __future__ import annotations

import io
import json
import tomllib
from dataclasses import dataclass
from functools import cache

from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.runtimes.base import RuntimeOptions
from tests.deploy.contract import ROOT

DOCKERFILES = {
    "cpu": ROOT / "docker" / "Dockerfile.cpu",
    "cuda": ROOT / "docker" / "Dockerfile.cuda",
}
REQUIREMENTS = ROOT / "docker" / "requirements"
#: Python of the distribution the CUDA image's base is built on.
DISTRO_PYTHON = {"ubuntu24.04": "3.12", "ubuntu22.04": "3.10"}
#: Declared by pyproject but never installed in the images: torch (backbones, exporters and
#: TorchScript serving) and the exporters' ONNX builder.
LEFT_OUT = {"torch", "onnxscript"}
#: ONNX Runtime's flavour per image, and what an image adds to serve.in.
IMAGE_EXTRAS = {"cpu": {"onnxruntime"}, "cuda": {"onnxruntime-gpu", "onnx"}}
ORT_FLAVOURS = {"onnxruntime", "onnxruntime-gpu"}


@dataclass
class Instruction:
    name: str
    value: str
    line: int


@cache
def parse(variant: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILES[variant].read_bytes()))


def image_env(variant: str) -> dict[str, str]:
    """The service settings an image sets (its ACTSERVE_* variables)."""
    return {k: v for k, v in parse(variant).envs.items() if k.startswith("ACTSERVE_")}


def stages(variant: str) -> list[list[Instruction]]:
    """Instructions per stage, from each FROM on."""
    found: list[list[Instruction]] = []
    for item in parse(variant).structure:
        instruction = Instruction(item["instruction"], item["value"], item["startline"] + 1)
        if instruction.name == "FROM":
            found.append([])
        if found and instruction.name != "COMMENT":
            found[-1].append(instruction)
    return found


def final(variant: str, name: str) -> list[Instruction]:
    return [i for i in stages(variant)[-1] if i.name == name]


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form instruction (after any --options)."""
    array = instruction.value[instruction.value.index("[") :]
    return json.loads(array)


@cache
def lock(variant: str) -> dict[str, str]:
    pins = {}
    for line in (REQUIREMENTS / f"{variant}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{variant}.txt: not a pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def requirements_in(name: str) -> dict[str, Requirement]:
    found = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found.update(requirements_in(line.removeprefix("-r ").strip()))
        elif line:
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = requirement
    return found


def project_dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    linux = {"platform_system": "Linux", "sys_platform": "linux"}
    return {
        canonicalize_name(r.name): r
        for r in requirements
        if r.marker is None or r.marker.evaluate(linux)
    }


def check_openvino_cache_mount(container: dict, volumes: list[dict], variant: str = "cpu") -> None:
    """A pod with a read-only root gives the image's OpenVINO cache directory a volume of its
    own, sized above the cache's bound: without it the cache is off (a warning at load) and
    every restart compiles every version again."""
    directory = image_env(variant)["ACTSERVE_OPENVINO_CACHE_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert directory in mounts, f"nothing writable is mounted at {directory}"
    (volume,) = [v for v in volumes if v["name"] == mounts[directory]]
    limit = volume["emptyDir"]["sizeLimit"]
    assert limit.endswith("Gi") and int(limit[:-2]) << 10 > RuntimeOptions().openvino_cache_max_mb
