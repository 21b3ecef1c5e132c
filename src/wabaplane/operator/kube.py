"""Kubernetes reads and writes the handlers need beyond kopf's own patching.

The official client is synchronous, so every call runs in a worker thread; an async handler must
never block the operator's event loop (kopf docs, async.rst).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from wabaplane.api.common import GROUP, VERSION

MANAGED_BY = {"app.kubernetes.io/managed-by": "wabaplane"}
TENANT_LABEL = f"{GROUP}/tenant"
PEERING_GROUP = "kopf.dev"


def load_configuration() -> None:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        # The client reads KUBECONFIG when it is imported; read it now instead.
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]


class Kube:
    def __init__(self) -> None:
        load_configuration()
        # An ApiClient of our own (not the library's shared default), so that close() can end its
        # connection pool when the operator stops.
        self.api = kubernetes.client.ApiClient()
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)

    async def close(self) -> None:
        await asyncio.to_thread(self.api.close)

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data decoded, or None when it does not exist."""
        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}

    async def secret_key(self, namespace: str, name: str, key: str) -> str | None:
        data = await self.secret(namespace, name)
        return None if data is None else data.get(key)

    async def write_secret(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        owner: Mapping[str, Any],
        labels: dict[str, str],
    ) -> None:
        """Create or replace an owned Secret (garbage-collected with its owner)."""
        body: Any = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**MANAGED_BY, **labels},
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "stringData": data,
        }
        try:
            await asyncio.to_thread(self.core.create_namespaced_secret, namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            await asyncio.to_thread(self.core.replace_namespaced_secret, name, namespace, body)

    async def set_secret_key(self, namespace: str, name: str, key: str, value: str) -> None:
        patch = {"data": {key: base64.b64encode(value.encode()).decode()}}
        await asyncio.to_thread(self.core.patch_namespaced_secret, name, namespace, patch)

    async def custom_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result = await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], result)

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
        )

    async def annotate(
        self, plural: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> bool:
        """Set (or with None remove) annotations; False when the object no longer exists."""
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, plural, name,
                {"metadata": {"annotations": dict(annotations)}},
            )  # fmt: skip
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def ensure_peering(self, name: str, namespaces: tuple[str, ...]) -> None:
        """Create kopf's peering object (namespaced in each namespace, else cluster-wide) unless it exists.

        kopf with a peering name only pauses for peers it sees in that object: were it missing, every
        replica would work at once. Raises ApiException 404 when kopf's peering CRD is not installed.
        """
        body = {"apiVersion": f"{PEERING_GROUP}/v1", "metadata": {"name": name}}
        for namespace in namespaces or (None,):
            try:
                if namespace is None:
                    await asyncio.to_thread(self.custom.create_cluster_custom_object, PEERING_GROUP, "v1",
                                            "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"})  # fmt: skip
                else:
                    await asyncio.to_thread(self.custom.create_namespaced_custom_object, PEERING_GROUP, "v1",
                                            namespace, "kopfpeerings", {**body, "kind": "KopfPeering"})  # fmt: skip
            except ApiException as error:
                if error.status != 409:
                    raise

    async def list_objects(self, plural: str, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every object of a wabaplane kind in these namespaces (or the whole cluster without any).

        Listing namespace by namespace lets an operator confined to some namespaces (Roles only,
        as the chart grants) work without a cluster-wide list permission.
        """
        if not namespaces:
            result = await asyncio.to_thread(self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
            return list(cast(dict[str, Any], result).get("items", []))
        items: list[dict[str, Any]] = []
        for namespace in namespaces:
            result = await asyncio.to_thread(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural
            )
            items += cast(dict[str, Any], result).get("items", [])
        return items
