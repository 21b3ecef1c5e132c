"""Types shared by the three kinds: references, conditions and the status skeleton."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from wabaplane.api.schema import CamelModel, immutable, validations

GROUP = "wabaplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "wabaplane"

# Meta's ids (WABA, business, phone number, template) are numeric strings of 15-17 digits today;
# the bound is looser so that a longer id in future does not need a new CRD version.
DIGITS_PATTERN = r"^[0-9]+$"
DigitString = Annotated[str, StringConstraints(pattern=DIGITS_PATTERN, min_length=1, max_length=32)]
# A Kubernetes object name (RFC 1123 subdomain).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, StringConstraints(pattern=OBJECT_NAME_PATTERN, min_length=1, max_length=253)]
SecretDataKey = Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", min_length=1, max_length=253)]


class SecretKeyRef(CamelModel):
    """A key of a Secret in the resource's own namespace."""

    name: ObjectName = Field(description="Name of the Secret, in the same namespace.")
    key: SecretDataKey = Field(description="Key within the Secret's data.")


class TenantRef(CamelModel):
    """A Tenant in the same namespace. Cross-namespace references are impossible by design."""

    name: ObjectName = Field(description="Name of the Tenant, in the same namespace.")


TENANT_REF_SCHEMA = validations(immutable("tenantRef"))


class Condition(CamelModel):
    """The shape of metav1.Condition."""

    type: Annotated[
        str,
        StringConstraints(
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
            max_length=316,
        ),
    ] = Field(description="Type of condition in CamelCase, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The .metadata.generation the condition was set from."
    )
    last_transition_time: datetime = Field(description="When the status last changed.")
    reason: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", min_length=1, max_length=1024),
    ] = Field(description="CamelCase reason for the condition's last transition.")
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        description="Human-readable details about the transition."
    )


class StatusBase(CamelModel):
    """What every kind's status carries."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The .metadata.generation the operator last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Current state; `Ready` summarises the others.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


READY_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
]
MESSAGE_COLUMN: dict[str, Any] = {
    "name": "Message",
    "type": "string",
    "priority": 1,
    "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
}
AGE_COLUMN: dict[str, Any] = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
