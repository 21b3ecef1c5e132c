"""Build etcd, kube-apiserver and kube-controller-manager from the published Go modules, once.

The binaries are cached outside the repository (see `paths.cache_root`); a build is skipped when
they are present. Each build runs in a copy of a committed wrapper module (`hack/kube`,
`hack/etcd`), writes to a temporary directory and is moved into place only when complete, so an
interrupted build never looks cached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from wabaplane.devcluster.errors import ClusterError
from wabaplane.devcluster.paths import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    MINIMUM_GO,
    Binaries,
    cache_root,
    wrappers_dir,
)

Report = Callable[[str], None]
PROGRESS_EVERY_SECONDS = 15.0
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class BuildTarget:
    """One `go build` of one or more commands from one wrapper module."""

    label: str
    wrapper: str
    packages: tuple[str, ...]
    ldflags: str
    tags: str
    output_dir: Path
    # `go build -o DIR/` names a binary after its package's last path element ("v3" resolves to
    # "server" for etcd), so a single-package target names its binary explicitly.
    binary_name: str | None = None


def _version_ldflags(version: str) -> str:
    major, minor = version.removeprefix("v").split(".")[:2]
    stamps = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(["-s", "-w", *stamps])


def targets(binaries: Binaries) -> list[BuildTarget]:
    return [
        BuildTarget(
            label=f"etcd {ETCD_VERSION}",
            wrapper="etcd",
            packages=("go.etcd.io/etcd/server/v3",),
            ldflags="-s -w",
            tags="",
            output_dir=binaries.etcd.parent,
            binary_name=binaries.etcd.name,
        ),
        BuildTarget(
            label=f"kube-apiserver and kube-controller-manager {KUBERNETES_VERSION}",
            wrapper="kube",
            packages=(
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
            ),
            ldflags=_version_ldflags(KUBERNETES_VERSION),
            tags="selinux,notest,grpcnotrace",
            output_dir=binaries.kube_apiserver.parent,
        ),
    ]


def go_environment() -> dict[str, str]:
    # GOTOOLCHAIN=local: a Go older than the modules need fails loudly instead of downloading one.
    return {**os.environ, "GOWORK": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}


def check_go() -> str:
    """The Go toolchain's version string, or a ClusterError that says how to get one."""
    go = shutil.which("go")
    if go is None:
        raise ClusterError(
            "no Go toolchain found on PATH. The local control plane is built from the Kubernetes Go "
            f"modules and needs Go {MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer "
            "(Debian: apt-get install golang-go, or https://go.dev/dl/). Alternatively point "
            "KUBECONFIG at an existing cluster (kind, or any other)."
        )
    output = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"go(\d+)\.(\d+)", output)
    if match is None or (int(match.group(1)), int(match.group(2))) < MINIMUM_GO:
        raise ClusterError(
            f"{output.strip() or 'go version failed'}: Kubernetes {KUBERNETES_VERSION} needs Go "
            f"{MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer"
        )
    return output.strip()


def ensure_built(binaries: Binaries | None = None, report: Report = print) -> Binaries:
    """Build whatever is missing; return at once when every binary is cached."""
    binaries = binaries or Binaries.cached()
    pending = [t for t in targets(binaries) if any(p.parent == t.output_dir for p in binaries.missing())]
    if not pending:
        return binaries
    report(f"Using {check_go()}")
    report(
        "Building the local control plane from the Kubernetes and etcd Go modules. This happens once; "
        f"the binaries are cached in {cache_root()}. A cold build takes several minutes to twenty "
        "on two cores and a few GB of module and build cache."
    )
    for target in pending:
        _build(target, report)
    still_missing = binaries.missing()
    if still_missing:
        raise ClusterError(f"the build finished but these binaries are missing: {still_missing}")
    return binaries


def _build(target: BuildTarget, report: Report) -> None:
    work = cache_root() / "build" / target.wrapper
    work.mkdir(parents=True, exist_ok=True)
    for source in (wrappers_dir() / target.wrapper).iterdir():
        if source.is_file():
            shutil.copy2(source, work / source.name)
    log_path = work / "build.log"
    partial = target.output_dir.with_name(target.output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = go_environment()
    started = time.monotonic()
    with log_path.open("w") as log:
        report(f"[{target.label}] resolving modules (go mod download) ...")
        _run(["go", "mod", "download"], work, env, log, log_path, target)
        total = _count_packages(target, work, env)
        report(f"[{target.label}] compiling {total} packages; log: {log_path}")
        output = str(partial / target.binary_name) if target.binary_name else f"{partial}/"
        command = ["go", "build", "-v", "-trimpath", f"-ldflags={target.ldflags}", "-o", output]
        if target.tags:
            command.append(f"-tags={target.tags}")
        command += list(target.packages)
        _run(command, work, env, log, log_path, target, progress=(report, total, started))
    shutil.rmtree(target.output_dir, ignore_errors=True)
    partial.rename(target.output_dir)
    report(f"[{target.label}] built in {_elapsed(started)}: {target.output_dir}")


def _count_packages(target: BuildTarget, work: Path, env: dict[str, str]) -> int:
    command = ["go", "list", "-deps"]
    if target.tags:
        command.append(f"-tags={target.tags}")
    listed = subprocess.run(
        [*command, *target.packages], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    return max(1, len(listed.stdout.split()))


def _run(
    command: Sequence[str],
    work: Path,
    env: dict[str, str],
    log: TextIO,
    log_path: Path,
    target: BuildTarget,
    progress: tuple[Report, int, float] | None = None,
) -> None:
    """Run one go command, its output into the log, reporting progress as `go build -v` names packages."""
    with subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        compiled = 0
        last_report = time.monotonic()
        for line in process.stdout:
            log.write(line)
            if progress is None or line.startswith((" ", "#")):
                continue
            compiled += 1
            report, total, started = progress
            if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                last_report = time.monotonic()
                percent = min(99, 100 * compiled // total)
                report(
                    f"[{target.label}] {percent:3d}% ({compiled}/{total} packages, {_elapsed(started)}): "
                    f"{line.strip()}"
                )
    if process.returncode != 0:
        log.flush()
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        raise ClusterError(
            f"building {target.label} failed ({' '.join(command[:2])} exited {process.returncode}). "
            f"Last lines of {log_path}:\n{tail}"
        )


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"
