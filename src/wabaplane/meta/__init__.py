"""The async Graph API client shared by the operator and the gateway."""

from wabaplane.meta.client import GraphClient
from wabaplane.meta.errors import MetaError

__all__ = ["GraphClient", "MetaError"]
