"""The operations page (docs/operations.md: Docker, Kubernetes, KServe) says what the files do:
every file, directory, image tag, port, setting and grace period its commands name exists and
agrees."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from tests.deploy.contract import (
    ENV_NAME,
    ROOT,
    default_drain_timeout_s,
    drain_budget_s,
    setting_env_names,
)
from tests.deploy.kustomize import render

PAGE = ROOT / "docs" / "operations.md"


def section() -> str:
    return PAGE.read_text()


def commands() -> list[list[str]]:
    """The shell commands of the section's code blocks, continuations joined, comments cut."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", section(), re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(shlex.split(line))
    assert found
    return found


def invocations(program: str, *words: str) -> list[list[str]]:
    """Commands running `program words...` (after any VAR=value prefix)."""
    found = []
    for command in commands():
        while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
            command = command[1:]
        if command[: 1 + len(words)] == [program, *words]:
            found.append(command)
    return found


def option_values(command: list[str], *names: str) -> list[str]:
    """Values of `--name value` and `--name=value`."""
    found = [command[i + 1] for i, word in enumerate(command[:-1]) if word in names]
    for word in command:
        name, sep, value = word.partition("=")
        if sep and name in names:
            found.append(value)
    return found


def compose_images() -> dict[str, str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {name: s["image"] for name, s in services.items() if "image" in s}


def test_docker_build_commands_use_the_dockerfiles_and_the_compose_tags() -> None:
    builds = invocations("docker", "build")
    assert len(builds) == 2
    tags = set()
    for command in builds:
        (dockerfile,) = option_values(command, "-f", "--file")
        (tag,) = option_values(command, "-t", "--tag")
        assert (ROOT / dockerfile).is_file(), dockerfile
        assert command[-1] == ".", "the build context is the repository root"
        assert dockerfile.endswith(tag.split(":")[1]), (dockerfile, tag)
        tags.add(tag)
    assert tags == {"actserve:cpu", "actserve:cuda"} <= set(compose_images().values())


def test_docker_run_commands_give_the_drain_time_to_finish() -> None:
    runs = invocations("docker", "run")
    assert runs
    for command in runs:
        (timeout,) = option_values(command, "--stop-timeout")
        assert float(timeout) >= drain_budget_s(default_drain_timeout_s()), command
        assert command[-1] in compose_images().values()
        for env in option_values(command, "-e", "--env"):
            assert env.split("=")[0] in setting_env_names(), env
        for volume in option_values(command, "-v", "--volume"):
            assert volume.split(":")[1] == "/models", "the images' VOLUME"


def test_compose_commands_name_existing_files_and_services() -> None:
    ups = invocations("docker", "compose")
    assert ups
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    for command in ups:
        for path in option_values(command, "-f", "--file"):
            assert (ROOT / path).is_file(), path
        if "up" in command:
            named = [w for w in command[command.index("up") + 1 :] if not w.startswith("-")]
            assert set(named) <= services, named


@pytest.mark.parametrize("program", ["kubectl", "helm"])
def test_kubernetes_commands_name_existing_files(program: str) -> None:
    found = invocations(program)
    assert found
    for command in found:
        for path in option_values(command, "-f", "--filename", "--from-file"):
            if not path.startswith("http"):
                assert (ROOT / path).is_file(), path
        for directory in option_values(command, "-k", "--kustomize"):
            assert render(ROOT / directory), directory


def test_every_setting_named_is_a_service_setting() -> None:
    named = set(ENV_NAME.findall(section()))
    assert named, "the section names the ACTSERVE_ settings it relies on"
    assert named <= setting_env_names(), named - setting_env_names()


def test_ports_named_are_the_ones_published() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {p.rsplit(":", 2)[-2] for s in services.values() for p in s.get("ports", [])}
    urls = set(re.findall(r"http://127\.0\.0\.1:(\d+)", section()))
    assert urls and urls <= published, urls - published
    assert {"8000", "9090", "3000"} <= urls


def test_every_path_named_exists() -> None:
    paths = set(re.findall(r"\b(?:deploy|docker|service|tests)/[\w./*-]*[\w*]", section()))
    assert paths
    missing = sorted(p for p in paths if not list(ROOT.glob(p)))
    assert not missing, missing
