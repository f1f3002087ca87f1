"""The slim client distribution (`clients/python`, `actserve-client`): its wheel holds exactly
the modules `actserve.client` imports, declares only light dependencies, and, installed into a
fresh virtual environment beside nothing but those dependencies (no torch, ONNX Runtime,
OpenCV, PyAV, numpy or FastAPI), classifies a video on a real server. Offline: the wheel is
built without build isolation and the dependencies are the ones this environment has."""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import actserve
from tests.service.conftest import LiveServer, settings_for
from tests.service.video.conftest import videos  # noqa: F401  (the session video library)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PROJECT = ROOT / "clients" / "python"
#: What an application that only calls the service must not need.
HEAVY = ["torch", "onnxruntime", "cv2", "av", "numpy", "fastapi", "starlette", "openvino"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client's wheel, built from a copy of its project (the links under src/ resolved,
    so no build output lands in the repository)."""
    work = tmp_path_factory.mktemp("client-dist")
    project = shutil.copytree(CLIENT_PROJECT, work / "project", symlinks=False)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    pip += ["--no-index", "--quiet", "--wheel-dir", str(work / "dist"), str(project)]
    subprocess.run(pip, check=True, timeout=120, capture_output=True)
    (built,) = (work / "dist").glob("actserve_client-*.whl")
    return built


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_declares_only_light_dependencies(wheel: Path) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == "actserve-client" and meta["Version"] == actserve.__version__
    required = [Requirement(line) for line in meta.get_all("Requires-Dist")]
    always = {r.name for r in required if r.marker is None}
    assert always == {"httpx", "pydantic", "filelock"}
    assert {r.name for r in required if r.marker is not None} == {"opentelemetry-api"}


def test_the_wheel_holds_exactly_what_the_client_imports(wheel: Path) -> None:
    """Every module of this repository that `import actserve.client` loads, and no other: a
    new import in the client (or in the models it returns) fails here until the distribution
    ships it."""
    script = (
        "import json, sys, actserve.client\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()\n"
        "    if n.split('.')[0] in ('actserve', 'service', 'model_store'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    imported = {Path(f).resolve().relative_to(ROOT).as_posix() for f in json.loads(done.stdout)}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.endswith(".py")}
        labels = {n for n in archive.namelist() if n.startswith("model_store/labels/")}
        for name in shipped:  # the same bytes as the repository's module
            assert archive.read(name) == (ROOT / name).read_bytes(), name
    # model_store ships whole (its label sets too): the client imports all of it.
    assert shipped == imported
    assert {Path(n).name for n in labels} >= {"kinetics400.txt", "__init__.py"}


def distributions_for(requirements: list[str]) -> set[str]:
    """The installed distributions `requirements` need here, recursively (markers evaluated,
    extras not followed)."""
    needed: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in needed:
            continue
        needed.add(name)
        pending += [Requirement(r) for r in importlib.metadata.requires(name) or []]
    return needed


@pytest.fixture(scope="module")
def slim_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (pip, no index) and, on its path,
    only the distributions the wheel's requirements need, linked from this environment."""
    work = tmp_path_factory.mktemp("slim")
    venv.EnvBuilder(with_pip=False).create(work / "venv")
    python = work / "venv" / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run([*install, "--no-deps", "--no-index", str(wheel)], check=True, timeout=120)
    requirements = [r for r in metadata(wheel).get_all("Requires-Dist") if "extra ==" not in r]
    deps = work / "deps"
    deps.mkdir()
    for name in distributions_for(requirements):
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or ()}
        for top in tops - {"..", "__pycache__"}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (deps / top).exists():
                (deps / top).symlink_to(source)
    (site,) = (work / "venv" / "lib").glob("python3*/site-packages")
    (site / "client-deps.pth").write_text(f"{deps}\n")
    return python


@pytest.fixture(scope="module")
def server(store_root) -> Iterator[LiveServer]:
    with LiveServer(settings_for(store_root)) as live:
        yield live


def test_the_slim_client_classifies_without_the_serving_stack(
    slim_python: Path,
    server: LiveServer,
    videos,  # noqa: F811
) -> None:
    script = (
        "import importlib.util, json, sys\n"
        f"absent = [n for n in {HEAVY!r} if importlib.util.find_spec(n) is not None]\n"
        "from actserve.client import Client, Embedding\n"
        "with Client(sys.argv[1]) as client:\n"
        "    result = client.classify(sys.argv[2], top_k=2, embedding=True)\n"
        "    embedded = client.embed(sys.argv[2])\n"
        "print(json.dumps({'present': absent, 'label': result.top_k[0].label,\n"
        "    'same_shape': type(embedded.embedding) is type(result.embedding) is Embedding,\n"
        "    'client': __import__('actserve.client').client.__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ACTSERVE_URL")}
    done = subprocess.run(
        [str(slim_python), "-I", "-c", script, server.url, str(videos["h264.mp4"])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=slim_python.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["present"] == [], f"importable in the slim environment: {answer['present']}"
    assert answer["label"] and answer["same_shape"]
    assert Path(answer["client"]).is_relative_to(slim_python.parents[1])
