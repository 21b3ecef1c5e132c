"""A read-only view of the cluster: Tenants, PhoneNumbers, MessageTemplates and wabaplane's Secrets.

Each kind is listed, then watched from the list's resourceVersion; a watch that ends is resumed,
a 410 Gone (history compacted) relists, any other failure relists after a backoff. Secrets are
only ever listed with wabaplane's label selector, never all Secrets. The routing snapshot is
rebuilt on every change, so a new number, a suspended tenant or a rotated secret routes within
the time the API server takes to send the event.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from wabaplane.api.common import GROUP, VERSION
from wabaplane.gateway.routing import NumberInfo, Snapshot, TemplateInfo, TenantInfo, digits, language_key
from wabaplane.meta.template_rules import body_parameter_count, header_parameter_count

logger = logging.getLogger("wabaplane.gateway.cluster")
SECRET_SELECTOR = "wabaplane.io/secret-type in (api-key,webhook-secret,token)"  # noqa: S105 - a label selector
Key = tuple[str, str]


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def _condition(obj: dict[str, Any], kind: str) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def _key(obj: dict[str, Any]) -> Key:
    return (obj["metadata"]["namespace"], obj["metadata"]["name"])


def tenant_info(obj: dict[str, Any]) -> TenantInfo:
    spec = obj.get("spec") or {}
    webhook = spec.get("webhook") or {}
    quotas = spec.get("quotas") or {}
    return TenantInfo(
        namespace=obj["metadata"]["namespace"],
        name=obj["metadata"]["name"],
        waba_id=str(spec.get("wabaId", "")),
        created=str(obj["metadata"].get("creationTimestamp", "")),
        # A Tenant in Conflict (another, older Tenant claims its WABA) owns nothing.
        ownership_proven=_condition(obj, "CredentialsValid") and not _condition(obj, "Conflict"),
        suspended=bool(spec.get("suspended", False)),
        webhook_url=webhook.get("url") or None,
        fields=frozenset(webhook.get("fields") or ["messages"]),
        max_in_flight=int(quotas.get("maxInFlightDeliveries", 10)),
        messages_per_second=int(quotas.get("messagesPerSecond", 20)),
        burst=int(quotas.get("burst", 40)),
        monthly_messages=quotas.get("monthlyMessages"),
    )


def number_info(obj: dict[str, Any]) -> NumberInfo:
    spec = obj.get("spec") or {}
    return NumberInfo(
        namespace=obj["metadata"]["namespace"],
        name=obj["metadata"]["name"],
        tenant=str((spec.get("tenantRef") or {}).get("name", "")),
        phone_number_id=str(spec.get("phoneNumberId", "")),
        display_digits=digits((obj.get("status") or {}).get("displayPhoneNumber")),
        ready=_condition(obj, "Ready"),
        conflict=_condition(obj, "Conflict"),
        created=str(obj["metadata"].get("creationTimestamp", "")),
        throughput_level=(obj.get("status") or {}).get("throughputLevel"),
        messaging_limit=(obj.get("status") or {}).get("messagingLimit"),
    )


def template_info(obj: dict[str, Any]) -> TemplateInfo:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    components = spec.get("components") or []
    return TemplateInfo(
        namespace=obj["metadata"]["namespace"],
        tenant=str((spec.get("tenantRef") or {}).get("name", "")),
        name=str(spec.get("name", "")),
        language=language_key(str(spec.get("language", ""))),
        status=status.get("templateStatus"),
        category=status.get("category") or spec.get("category"),
        body_parameters=body_parameter_count(components),
        header_parameters=header_parameter_count(components),
    )


def _decode(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def _unexpired(expires_at: str | None) -> bool:
    if not expires_at:
        return False
    try:
        return datetime.fromisoformat(expires_at.replace("Z", "+00:00")) > datetime.now(UTC)
    except ValueError:
        return False


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    custom: bool = True


KINDS = (Kind("Tenant", "tenants"), Kind("PhoneNumber", "phonenumbers"), Kind("MessageTemplate", "messagetemplates"),
         Kind("Secret", "secrets", custom=False))  # fmt: skip


class ClusterView:
    """The objects the gateway needs, kept current by watches; read it, never write through it."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[Key, dict[str, Any]]] = {kind.plural: {} for kind in KINDS}
        self.snapshot = Snapshot()
        self.api_keys: dict[str, Key] = {}
        self.listeners: list[Callable[[], None]] = []
        self._synced: dict[str, bool] = {}

    @property
    def synced(self) -> bool:
        return bool(self._synced) and all(self._synced.values())

    def load(self, plural: str, items: list[dict[str, Any]]) -> None:
        """Set one kind's objects without a watch (tools and tests); counts as synced."""
        self._synced[f"{plural}@static"] = True
        self.replace(plural, items)

    def replace(self, plural: str, items: list[dict[str, Any]]) -> None:
        self.objects[plural] = {_key(item): item for item in items}
        self._rebuild()

    def apply(self, plural: str, event: str, obj: dict[str, Any]) -> None:
        if event == "DELETED":
            self.objects[plural].pop(_key(obj), None)
        else:
            self.objects[plural][_key(obj)] = obj
        self._rebuild()

    def _rebuild(self) -> None:
        tenants = {key: tenant_info(obj) for key, obj in self.objects["tenants"].items()}
        numbers = {key: number_info(obj) for key, obj in self.objects["phonenumbers"].items()}
        templates = {}
        for obj in self.objects["messagetemplates"].values():
            info = template_info(obj)
            templates[(info.namespace, info.tenant, info.name, info.language)] = info
        self.snapshot = Snapshot(tenants, numbers, templates)
        api_keys: dict[str, Key] = {}
        for key, tenant in self.objects["tenants"].items():
            for value in self._secret_values(key, tenant, "apiKeySecretName", "api-key"):
                api_keys[hash_key(value)] = key
        self.api_keys = api_keys
        for listener in self.listeners:
            listener()

    def _secret_values(
        self, tenant_key: Key, tenant: dict[str, Any], status_field: str, data_key: str
    ) -> list[str]:
        name = (tenant.get("status") or {}).get(status_field)
        secret = self.objects["secrets"].get((tenant_key[0], name)) if name else None
        if secret is None:
            return []
        data = _decode(secret)
        values = [data[data_key]] if data.get(data_key) else []
        if data.get(f"previous-{data_key}") and _unexpired(data.get("previous-expires-at")):
            values.append(data[f"previous-{data_key}"])
        return values

    def webhook_secrets(self, tenant_key: Key) -> list[str]:
        """The tenant's current webhook secret, then the previous one while its overlap lasts."""
        tenant = self.objects["tenants"].get(tenant_key)
        return self._secret_values(tenant_key, tenant, "webhookSecretName", "secret") if tenant else []

    def tenant_token(self, tenant_key: Key) -> str | None:
        tenant = self.objects["tenants"].get(tenant_key)
        values = self._secret_values(tenant_key, tenant, "tokenSecretName", "token") if tenant else []
        return values[0] if values else None

    def tenant_for_api_key(self, api_key: str) -> Key | None:
        return self.api_keys.get(hash_key(api_key))


async def api_client(kubeconfig: str | None) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        except k8s_config.ConfigException:
            pass
    await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return k8s.ApiClient(configuration)


class Watcher:
    """Lists and watches one kind in one namespace (or all), feeding the view."""

    def __init__(
        self,
        api: k8s.ApiClient,
        view: ClusterView,
        kind: Kind,
        namespace: str | None,
        watch_seconds: int = 300,
    ) -> None:
        self.api, self.view, self.kind, self.namespace = api, view, kind, namespace
        self.watch_seconds = watch_seconds
        self.tag = f"{kind.plural}@{namespace or '*'}"
        self.items: dict[Key, dict[str, Any]] = {}
        view._synced[self.tag] = False

    def _call(self, **params: Any) -> Any:
        params = {"_preload_content": False, **params}
        if self.kind.custom:
            custom = k8s.CustomObjectsApi(self.api)
            if self.namespace:
                return custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, self.kind.plural, **params
                )
            return custom.list_cluster_custom_object(GROUP, VERSION, self.kind.plural, **params)
        core = k8s.CoreV1Api(self.api)
        params["label_selector"] = SECRET_SELECTOR
        if self.namespace:
            return core.list_namespaced_secret(self.namespace, **params)
        return core.list_secret_for_all_namespaces(**params)

    def _publish(self) -> None:
        # Several watchers share a kind when the gateway watches several namespaces.
        merged = {key: obj for key, obj in self.view.objects[self.kind.plural].items()
                  if self.namespace is not None and key[0] != self.namespace}  # fmt: skip
        merged.update(self.items)
        self.view.replace(self.kind.plural, list(merged.values()))

    @staticmethod
    async def _check(response: Any) -> None:
        if response.status == 410:
            raise Gone("410 Gone")
        if response.status != 200:
            text = (await response.read())[:300].decode(errors="replace")
            raise RuntimeError(f"the API server answered {response.status}: {text}")

    async def _list(self) -> str:
        response = await self._call()
        async with response:
            await self._check(response)
            listing = json.loads(await response.read())
        self.items = {_key(item): item for item in listing.get("items", [])}
        self._publish()
        self.view._synced[self.tag] = True
        return str(listing["metadata"]["resourceVersion"])

    async def _watch(self, resource_version: str) -> str:
        timeout = int(self.watch_seconds * random.uniform(0.8, 1.0))  # noqa: S311 - spreads reconnects, not security
        response = await self._call(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=timeout + 30,
        )
        async with response:
            await self._check(response)
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message"))
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self.items.pop(_key(obj), None)
                else:
                    self.items[_key(obj)] = obj
                self.view.apply(self.kind.plural, kind, obj)
        return resource_version

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                resource_version = await self._list()
                backoff = 0.5
                while True:
                    resource_version = await self._watch(resource_version)
            except Gone:
                logger.info("%s: watch history expired, listing again", self.tag)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "%s: %s: %s; listing again in %.1fs", self.tag, type(error).__name__, error, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


async def watch_cluster(api: k8s.ApiClient, view: ClusterView, namespaces: tuple[str, ...]) -> None:
    """Run every watcher until cancelled."""
    watchers = [
        Watcher(api, view, kind, namespace) for kind in KINDS for namespace in (namespaces or (None,))
    ]
    async with asyncio.TaskGroup() as group:
        for watcher in watchers:
            group.create_task(watcher.run())
