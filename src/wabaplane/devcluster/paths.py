"""Where the local control plane's binaries, wrapper modules and state live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.37.1"
ETCD_VERSION = "v3.6.16"
# The Go release that the Kubernetes version above requires (go.mod of k8s.io/kubernetes).
MINIMUM_GO = (1, 26)


def cache_root() -> Path:
    """Build outputs, outside any repository: $WABAPLANE_CACHE_DIR or ~/.cache/wabaplane."""
    configured = os.environ.get("WABAPLANE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "wabaplane"


def default_state_dir() -> Path:
    """Certificates, etcd data, logs and the kubeconfig of the running cluster."""
    configured = os.environ.get("WABAPLANE_CLUSTER_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "wabaplane" / "cluster"


def wrappers_dir() -> Path:
    """The committed wrapper Go modules: `hack/` in a checkout, bundled in the wheel otherwise."""
    bundled = Path(__file__).resolve().parent / "wrappers"
    if bundled.is_dir():
        return bundled
    checkout = Path(__file__).resolve().parents[3] / "hack"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"wrapper modules not found in {bundled} or {checkout}")


@dataclass(frozen=True)
class Binaries:
    """The three control-plane binaries, built once and cached."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path

    @classmethod
    def cached(cls, root: Path | None = None) -> Binaries:
        root = root or cache_root()
        kube_bin = root / "k8s" / KUBERNETES_VERSION / "bin"
        return cls(
            etcd=root / "etcd" / ETCD_VERSION / "bin" / "etcd",
            kube_apiserver=kube_bin / "kube-apiserver",
            kube_controller_manager=kube_bin / "kube-controller-manager",
        )

    def all(self) -> list[Path]:
        return [self.etcd, self.kube_apiserver, self.kube_controller_manager]

    def missing(self) -> list[Path]:
        return [path for path in self.all() if not os.access(path, os.X_OK)]
