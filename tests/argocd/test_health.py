"""The Argo CD health checks (deploy/argocd), run as Argo CD runs them, on objects from a real cluster.

Argo CD gives a health script the object as the global `obj` and only the base and table libraries
(no string, os, io or math unless useOpenLibs is set), so the runtime here removes the others too.
Each kind's `health_test.yaml` is Argo's own test format: the same files can go upstream.
"""

from __future__ import annotations

from typing import Any

import lupa
import pytest
import yaml

from tests.conftest import REPO

HEALTH_DIR = REPO / "deploy" / "argocd" / "wabaplane.io"
KINDS = ("Tenant", "PhoneNumber", "MessageTemplate")
NOT_IN_ARGO = ("string", "os", "io", "math", "debug", "coroutine", "utf8", "require", "dofile", "loadfile")


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    for name in NOT_IN_ARGO:
        runtime.globals()[name] = None
    runtime.globals()["obj"] = to_lua(runtime, obj)
    script = (HEALTH_DIR / kind / "health.lua").read_text()
    result: Any = runtime.execute(script)  # a Lua table, indexed like a dict
    return {"status": str(result["status"]), "message": str(result["message"])}


def to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like Python values as Lua tables (lists 1-indexed), as Argo CD converts the object."""
    if isinstance(value, dict):
        return runtime.table_from({key: to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, item) for item in value])
    return value


def cases() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for kind in KINDS:
        for case in yaml.safe_load((HEALTH_DIR / kind / "health_test.yaml").read_text())["tests"]:
            found.append((kind, case))
    return found


@pytest.mark.parametrize(("kind", "case"), cases(), ids=lambda v: v if isinstance(v, str) else v["inputPath"])
def test_health_matches_argo_test_file(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH_DIR / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind
    assert run_health(kind, obj) == case["healthStatus"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_testdata_file_has_a_case_and_every_state_is_covered(kind: str) -> None:
    tests = yaml.safe_load((HEALTH_DIR / kind / "health_test.yaml").read_text())["tests"]
    files = {f"testdata/{path.name}" for path in (HEALTH_DIR / kind / "testdata").glob("*.yaml")}
    assert {case["inputPath"] for case in tests} == files
    statuses = {case["healthStatus"]["status"] for case in tests}
    assert {"Healthy", "Progressing", "Degraded"} <= statuses


def test_a_new_object_without_status_is_progressing() -> None:
    for kind in KINDS:
        fresh = {
            "apiVersion": "wabaplane.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": "x", "generation": 1},
        }
        assert run_health(kind, fresh) == {"status": "Progressing", "message": "Waiting for the operator"}


def test_the_argocd_cm_snippet_holds_each_script_verbatim() -> None:
    snippet = yaml.safe_load((REPO / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    for kind in KINDS:
        key = f"resource.customizations.health.wabaplane.io_{kind}"
        assert snippet["data"][key] == (HEALTH_DIR / kind / "health.lua").read_text()
