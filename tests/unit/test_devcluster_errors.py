"""The local control plane fails with errors a person can act on."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from wabaplane.devcluster import build
from wabaplane.devcluster.build import BuildTarget
from wabaplane.devcluster.cluster import LocalCluster, ProcessRecord, process_alive
from wabaplane.devcluster.errors import ClusterError
from wabaplane.devcluster.paths import Binaries


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_binaries(tmp_path: Path, etcd_body: str) -> Binaries:
    binaries = tmp_path / "bin"
    binaries.mkdir()
    return Binaries(
        etcd=_script(binaries / "etcd", etcd_body),
        kube_apiserver=_script(binaries / "kube-apiserver", "exit 1\n"),
        kube_controller_manager=_script(binaries / "kube-controller-manager", "exit 1\n"),
    )


def test_no_go_toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    with pytest.raises(ClusterError, match="no Go toolchain found on PATH") as error:
        build.check_go()
    assert "KUBECONFIG" in str(error.value)


def test_go_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _script(tmp_path / "go", 'echo "go version go1.22.1 linux/amd64"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ClusterError, match=r"go1\.22\.1.*needs Go 1\.26 or newer"):
        build.check_go()


def test_build_failure_shows_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `go build` of a package that does not compile: the error carries Go's own message."""
    wrappers = tmp_path / "wrappers"
    (wrappers / "broken").mkdir(parents=True)
    (wrappers / "broken" / "go.mod").write_text("module example.com/broken\n\ngo 1.26\n")
    (wrappers / "broken" / "main.go").write_text("package main\n\nfunc main() { undefinedCall() }\n")
    monkeypatch.setattr(build, "wrappers_dir", lambda: wrappers)
    monkeypatch.setenv("WABAPLANE_CACHE_DIR", str(tmp_path / "cache"))
    target = BuildTarget(
        label="broken",
        wrapper="broken",
        packages=("example.com/broken",),
        ldflags="-s -w",
        tags="",
        output_dir=tmp_path / "out" / "bin",
    )
    with pytest.raises(ClusterError) as error:
        build._build(target, report=lambda _: None)
    message = str(error.value)
    assert "building broken failed" in message
    assert "undefined: undefinedCall" in message
    assert not target.output_dir.exists(), "a failed build must not look cached"


def test_missing_binaries(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "state", binaries=Binaries.cached(tmp_path / "empty-cache"), report=lambda _: None
    )
    with pytest.raises(ClusterError, match=r"control-plane binaries are missing.*wabaplane cluster build"):
        cluster.start()


def test_port_in_use(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "state", binaries=_fake_binaries(tmp_path, "sleep 30\n"), report=lambda _: None
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {port} on 127.0.0.1 .* is in use by another process"):
            cluster.start(apiserver_port=port)
    assert cluster.status() == {}, "nothing may be started when the port check fails"


def test_process_that_dies_during_start(tmp_path: Path) -> None:
    binaries = _fake_binaries(tmp_path, 'echo "etcd: cannot open data dir: permission denied"\nexit 3\n')
    cluster = LocalCluster(tmp_path / "state", binaries=binaries, report=lambda _: None)
    with pytest.raises(ClusterError) as error:
        cluster.start()
    message = str(error.value)
    assert "etcd exited with code 3 while starting" in message
    assert "cannot open data dir: permission denied" in message
    assert cluster.status() == {}


def test_stop_leaves_other_processes_alone(tmp_path: Path) -> None:
    """A pid recorded by the cluster but now running something else is not ours to signal."""
    record = ProcessRecord(pid=os.getpid(), binary="/nonexistent/etcd", log="")
    assert not process_alive(record)
