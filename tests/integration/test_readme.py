"""The README's manifests are accepted by the real API server as written (a server-side dry run)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import REPO, Kube

pytestmark = pytest.mark.cluster
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def readme_manifests() -> list[dict[str, object]]:
    blocks = YAML_BLOCK.findall((REPO / "README.md").read_text())
    documents = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    return [doc for doc in documents if str(doc.get("apiVersion", "")).startswith("wabaplane.io/")]


def test_the_readme_shows_one_complete_example_of_each_kind() -> None:
    assert sorted(str(doc["kind"]) for doc in readme_manifests()) == [
        "MessageTemplate",
        "PhoneNumber",
        "Tenant",
    ]


def test_every_readme_manifest_is_accepted(kube: Kube, namespace: str) -> None:
    for manifest in readme_manifests():
        metadata = manifest["metadata"]
        assert isinstance(metadata, dict)
        metadata["namespace"] = namespace  # the README says `shop`; the test gets its own namespace
        result = kube.run("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(manifest), check=False)
        assert result.returncode == 0, f"{manifest['kind']}: {result.stderr}"
