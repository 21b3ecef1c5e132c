"""The image, checked without a Docker engine: the Dockerfile's stages and sources are coherent, and the
wheel it installs builds and runs in a clean virtualenv with every command the chart uses."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip


def test_dockerfile_stages_and_sources_exist() -> None:
    stages: list[str] = []
    for instruction, argument in instructions():
        if instruction == "FROM":
            assert " AS " in argument, "every stage is named"
            stages.append(argument.rsplit(" AS ", 1)[1].strip())
        elif instruction == "COPY":
            parts = argument.split()
            source_stage = next((p.split("=", 1)[1] for p in parts if p.startswith("--from=")), None)
            sources = [p for p in parts if not p.startswith("--")][:-1]
            if source_stage is not None:
                assert source_stage in stages, f"COPY --from={source_stage} names no earlier stage"
            else:
                for source in sources:
                    assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    assert stages == ["build", "runtime"]


def test_dockerfile_runs_wabaplane_as_a_numeric_non_root_user() -> None:
    found = dict(instructions())  # the last of each instruction wins
    user = found["USER"].split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user)
    assert found["ENTRYPOINT"] == '["wabaplane"]'
    # Everything the wheel force-includes must be copied into the build stage.
    pyproject = (REPO / "pyproject.toml").read_text()
    for included in re.findall(r'^"(hack/[^"]+)" = ', pyproject, flags=re.MULTILINE):
        assert f"COPY {included} " in DOCKERFILE


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the Dockerfile builds, installed with its dependencies into a new virtualenv."""
    work = tmp_path_factory.mktemp("image")
    wheels = work / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
                    str(REPO)], check=True, timeout=600)  # fmt: skip
    (wheel,) = wheels.glob("wabaplane-*.whl")
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    subprocess.run(
        [str(environment / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True, timeout=900
    )
    return environment


@pytest.mark.parametrize("command", ["operator", "gateway", "emulator", "crds", "dev"])
def test_the_installed_wheel_runs_every_command(clean_venv: Path, command: str) -> None:
    result = subprocess.run([str(clean_venv / "bin" / "wabaplane"), command, "--help"], capture_output=True,
                            text=True, timeout=60, check=False, cwd=clean_venv)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Usage: wabaplane" in result.stdout


def test_the_installed_wheel_generates_the_same_crds(clean_venv: Path) -> None:
    result = subprocess.run([str(clean_venv / "bin" / "wabaplane"), "crds"], capture_output=True, text=True,
                            timeout=60, check=True, cwd=clean_venv)  # fmt: skip
    expected = "---\n".join(path.read_text() for path in
                            sorted(REPO.glob("crds/*.yaml"), key=lambda p: ["tenants", "phonenumbers",
                                                                            "messagetemplates"].index(p.name.split(".")[0])))  # fmt: skip
    assert result.stdout == expected
