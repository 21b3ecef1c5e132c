"""The Helm chart's values as pydantic models: the single source of `values.yaml` and `values.schema.json`.

`wabaplane chart --output-dir charts/wabaplane` writes both (and copies the CRDs into the chart);
a test fails when the committed files differ from what the models give.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Values(BaseModel):
    # camelCase keys, as Helm's best practices ask; strict, so a typo in values fails the install.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


Resources = dict[str, dict[str, str]]


class Image(_Values):
    repository: str = Field(
        default="ghcr.io/wabaplane/wabaplane", description="The image of every component."
    )
    tag: str = Field(default="", description="The image tag; empty means the chart's appVersion.")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="When the kubelet pulls the image."
    )
    pull_secrets: list[str] = Field(default_factory=list, description="Names of imagePullSecrets.")


class Crds(_Values):
    enabled: bool = Field(default=True, description="Install and upgrade the three CRDs with the chart.")
    keep: bool = Field(
        default=True,
        description="Annotate the CRDs with helm.sh/resource-policy: keep, so an uninstall never deletes "
        "them (and with them every Tenant, PhoneNumber and MessageTemplate).",
    )


class Meta(_Values):
    existing_secret: str = Field(
        default="",
        description="A Secret with the keys app-id, app-secret and verify-token; when empty the chart "
        "creates one from appId, appSecret and verifyToken.",
    )
    app_id: str = Field(default="", description="The Meta app's id (used when existingSecret is empty).")
    app_secret: str = Field(
        default="", description="The Meta app's secret (used when existingSecret is empty; prefer a Secret)."
    )
    verify_token: str = Field(
        default="",
        description="The token of Meta's webhook verification handshake (when existingSecret is empty).",
    )
    graph_url: str = Field(default="https://graph.facebook.com", description="Where Meta's Graph API is.")
    api_version: str = Field(default="v25.0", description="The Graph API version the operator calls.")


class OperatorSettings(_Values):
    token_expiry_warning_seconds: int = Field(
        default=604800, ge=60, description="Raise TokenExpiring this long before a token expires."
    )
    resync_seconds: int = Field(
        default=300, ge=10, description="Re-check tokens, numbers and templates this often."
    )
    pending_poll_seconds: int = Field(
        default=30, ge=1, description="Poll a template under review this often."
    )
    rotation_overlap_seconds: int = Field(
        default=86400, ge=0, description="How long a rotated API key or webhook secret keeps working."
    )
    retry_delay_seconds: int = Field(
        default=30, ge=1, description="Wait this long before retrying when Meta is unavailable."
    )


class Pod(_Values):
    resources: Resources = Field(default_factory=dict, description="Requests and limits of the container.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="The pods' nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="The pods' tolerations.")
    affinity: dict[str, Any] = Field(default_factory=dict, description="The pods' affinity.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on the pods.")


class Operator(Pod):
    resources: Resources = Field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        description="Requests and limits of the operator's container.",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        description="Operator replicas. One is replaced with Recreate; more peer through a KopfPeering "
        "object (kopf): the oldest works, the others wait and take over when it stops.",
    )
    peering_lifetime_seconds: int = Field(
        default=60,
        ge=10,
        le=3600,
        description="With replicas > 1: after a replica crashes, the next one works once this has passed "
        "(a clean stop hands over at once). Replicas renew their record 5 to 10 s before it expires.",
    )
    install_peering_crd: bool = Field(
        default=True,
        description="With replicas > 1, install kopf's KopfPeering CRD (kopfpeerings.kopf.dev). Turn off "
        "when another kopf operator's release already installs it.",
    )
    verbose: bool = Field(default=False, description="Debug logging.")
    settings: OperatorSettings = Field(
        default_factory=OperatorSettings, description="Timings of the operator."
    )


class Sqlite(_Values):
    size: str = Field(
        default="1Gi", description="Size of the PersistentVolumeClaim holding the SQLite store."
    )
    storage_class_name: str = Field(default="", description="Its storage class; empty means the default one.")


class SecretRef(_Values):
    existing_secret: str = Field(default="", description="The Secret that holds the URL.")
    key: str = Field(default="url", description="The key of the URL in that Secret.")


class Store(_Values):
    type: Literal["sqlite", "postgresql"] = Field(
        default="sqlite",
        description="sqlite (on a PersistentVolumeClaim, one replica only) or postgresql (several replicas).",
    )
    sqlite: Sqlite = Field(default_factory=Sqlite, description="The SQLite store.")
    postgresql: SecretRef = Field(
        default_factory=SecretRef,
        description="The PostgreSQL store: a Secret holding postgresql://user:password@host/db.",
    )


class Service(_Values):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    port: int = Field(default=80, ge=1, le=65535, description="The Service's port.")


class Ingress(_Values):
    enabled: bool = Field(default=False, description="Expose the gateway through an Ingress.")
    class_name: str = Field(default="", description="The ingressClassName.")
    host: str = Field(
        default="", description="The public host name (Meta's callback URL is https://HOST/webhook)."
    )
    tls_secret_name: str = Field(
        default="", description="The TLS certificate's Secret; empty means no tls block."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on the Ingress.")


class Autoscaling(_Values):
    enabled: bool = Field(default=False, description="Scale the gateway with a HorizontalPodAutoscaler.")
    min_replicas: int = Field(default=2, ge=1, description="The fewest replicas.")
    max_replicas: int = Field(default=6, ge=1, description="The most replicas.")
    target_cpu_utilization_percentage: int = Field(default=70, ge=1, le=100, description="Target CPU use.")


class Disruption(_Values):
    enabled: bool = Field(default=True, description="Create a PodDisruptionBudget for the gateway.")
    max_unavailable: int = Field(default=1, ge=0, description="Gateway pods a voluntary disruption may take.")


class Gateway(Pod):
    replica_count: int = Field(
        default=1, ge=1, description="Gateway replicas; more than one needs store.type postgresql."
    )
    resources: Resources = Field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "192Mi"},
            "limits": {"memory": "512Mi"},
        },
        description="Requests and limits of the gateway's container.",
    )
    store: Store = Field(
        default_factory=Store, description="Where webhooks, deliveries and the message log live."
    )
    redis: SecretRef = Field(
        default_factory=SecretRef,
        description="Redis shares the send limits between replicas: a Secret holding redis://host:6379/0.",
    )
    max_in_flight_requests: int = Field(default=256, ge=1, description="Concurrent webhook POSTs before 503.")
    retry_schedule: str = Field(
        default="",
        description="Delays between delivery attempts, e.g. 5s,5m,30m,2h; empty means about 3 days.",
    )
    extra_args: list[str] = Field(default_factory=list, description="More `wabaplane gateway` flags.")
    service: Service = Field(default_factory=Service, description="The gateway's Service.")
    ingress: Ingress = Field(default_factory=Ingress, description="The gateway's Ingress.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="The gateway's autoscaler.")
    pod_disruption_budget: Disruption = Field(default_factory=Disruption, description="The gateway's PDB.")


class NetworkPolicy(_Values):
    enabled: bool = Field(
        default=True,
        description="Only the gateway is reachable from outside; only the gateway reaches the operator's "
        "management endpoint.",
    )


class ServiceMonitor(_Values):
    enabled: bool = Field(default=False, description="Create ServiceMonitors (Prometheus Operator).")
    interval: str = Field(default="30s", description="Scrape interval.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels your Prometheus selects on.")


class PrometheusRule(_Values):
    enabled: bool = Field(default=False, description="Create the PrometheusRule with wabaplane's alerts.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels your Prometheus selects on.")


class Dashboard(_Values):
    enabled: bool = Field(default=False, description="Create the Grafana dashboard ConfigMap.")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels the Grafana sidecar selects on.",
    )


class Monitoring(_Values):
    service_monitor: ServiceMonitor = Field(default_factory=ServiceMonitor, description="Scraping.")
    prometheus_rule: PrometheusRule = Field(default_factory=PrometheusRule, description="Alerts.")
    dashboard: Dashboard = Field(default_factory=Dashboard, description="The Grafana dashboard.")


class Values(_Values):
    image: Image = Field(default_factory=Image, description="The image of the operator and the gateway.")
    crds: Crds = Field(default_factory=Crds, description="The CustomResourceDefinitions.")
    watch_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces holding Tenants; empty means the release's namespace. The operator and the "
        "gateway get Roles in exactly these namespaces (never cluster-wide Secret access).",
    )
    meta: Meta = Field(default_factory=Meta, description="The Meta app.")
    operator: Operator = Field(default_factory=Operator, description="The operator.")
    gateway: Gateway = Field(default_factory=Gateway, description="The gateway.")
    network_policy: NetworkPolicy = Field(default_factory=NetworkPolicy, description="NetworkPolicies.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus and Grafana.")
