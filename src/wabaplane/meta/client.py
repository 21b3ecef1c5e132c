"""An async Graph API client for the WhatsApp endpoints the operator and the gateway use.

- One method per endpoint, typed responses (models.py), exceptions by Meta's error code (errors.py).
- Timeouts on every call. Transient failures are retried a bounded number of times with jittered
  exponential backoff; a POST is retried only when Meta cannot have acted on it (a connection that
  never opened, or a transient error Meta answered), so a send is never duplicated by a retry.
- Tokens travel in the Authorization header and never appear in logs or exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from wabaplane.meta import errors
from wabaplane.meta.models import (
    AccessToken,
    PhoneNumberInfo,
    SendResult,
    SubscribedApp,
    TemplateCreated,
    TemplateInfo,
    TokenInfo,
)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
PHONE_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,code_verification_status,name_status,status,"
    "platform_type,throughput,whatsapp_business_manager_messaging_limit"
)
# httpx logs every request URL at INFO; the code exchange's URL carries the app secret and the code.
logging.getLogger("httpx").setLevel(logging.WARNING)

Model = TypeVar("Model", bound=BaseModel)


class GraphClient:
    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        *,
        app_id: str | None = None,
        app_secret: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        page_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_version = api_version
        self.app_id = app_id
        self._app_secret = app_secret
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.page_size = page_size
        self._http = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/{api_version}/",
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"User-Agent": "wabaplane"},
        )

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """One Graph call with retries; the decoded JSON body, or a MetaError subclass."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, path.lstrip("/"), params=params, json=json, headers=headers
                )
            except httpx.ConnectError as error:
                failure: errors.MetaError = errors.MetaUnreachable(
                    f"cannot connect to the Graph API: {error}"
                )
                safe_to_retry = True
            except httpx.TimeoutException as error:
                failure = errors.MetaUnreachable(f"Graph API call timed out ({type(error).__name__})")
                safe_to_retry = method != "POST"
            except httpx.HTTPError as error:
                failure = errors.MetaUnreachable(f"Graph API call failed: {type(error).__name__}: {error}")
                safe_to_retry = method != "POST"
            else:
                body = _decode(response)
                if response.is_success and isinstance(body, dict):
                    return body
                failure = errors.from_response(response.status_code, body, _retry_after(response))
                safe_to_retry = isinstance(failure, errors.TransientError)
            if (
                not (safe_to_retry and isinstance(failure, errors.TransientError))
                or attempt >= self.max_retries
            ):
                raise failure
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads the retries of many callers instead of synchronising them.
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret

    async def _model(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return model.model_validate(await self.request(method, path, **kwargs))

    async def _paged(self, path: str, *, token: str, params: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"limit": str(self.page_size), **params}
        while True:
            page = await self.request("GET", path, token=token, params=params)
            items += page.get("data", [])
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return items
            params = {**params, "after": after}

    def _app_credentials(self) -> dict[str, str]:
        if not self.app_id or not self._app_secret:
            raise ValueError("this call needs the Meta app id and app secret")
        return {"client_id": self.app_id, "client_secret": self._app_secret}

    def app_access_token(self) -> str:
        """The app token (`app_id|app_secret`) Meta accepts for debug_token."""
        credentials = self._app_credentials()
        return f"{credentials['client_id']}|{credentials['client_secret']}"

    # -- tokens --------------------------------------------------------------------------------

    async def exchange_code(self, code: str) -> AccessToken:
        """Embedded Signup: exchange the one-time code for a business integration token."""
        params = {**self._app_credentials(), "code": code}
        return await self._model(AccessToken, "GET", "oauth/access_token", token=None, params=params)

    async def debug_token(self, input_token: str, *, access_token: str | None = None) -> TokenInfo:
        """What a token may reach (granular scopes) and when it expires."""
        body = await self.request(
            "GET",
            "debug_token",
            token=access_token or self.app_access_token(),
            params={"input_token": input_token},
        )
        return TokenInfo.model_validate(body.get("data", {}))

    # -- WABA subscription ---------------------------------------------------------------------

    async def subscribe_app(
        self,
        waba_id: str,
        token: str,
        *,
        override_callback_uri: str | None = None,
        verify_token: str | None = None,
    ) -> bool:
        body = None
        if override_callback_uri is not None:
            body = {"override_callback_uri": override_callback_uri, "verify_token": verify_token or ""}
        result = await self.request("POST", f"{waba_id}/subscribed_apps", token=token, json=body)
        return bool(result.get("success"))

    async def subscribed_apps(self, waba_id: str, token: str) -> list[SubscribedApp]:
        result = await self.request("GET", f"{waba_id}/subscribed_apps", token=token)
        return [SubscribedApp.model_validate(item) for item in result.get("data", [])]

    async def unsubscribe_app(self, waba_id: str, token: str) -> bool:
        result = await self.request("DELETE", f"{waba_id}/subscribed_apps", token=token)
        return bool(result.get("success"))

    # -- phone numbers -------------------------------------------------------------------------

    async def phone_numbers(self, waba_id: str, token: str) -> list[PhoneNumberInfo]:
        items = await self._paged(f"{waba_id}/phone_numbers", token=token, params={"fields": PHONE_FIELDS})
        return [PhoneNumberInfo.model_validate(item) for item in items]

    async def phone_number(
        self, phone_number_id: str, token: str, fields: str = PHONE_FIELDS
    ) -> PhoneNumberInfo:
        return await self._model(
            PhoneNumberInfo, "GET", phone_number_id, token=token, params={"fields": fields}
        )

    async def register(self, phone_number_id: str, token: str, pin: str) -> bool:
        body = {"messaging_product": "whatsapp", "pin": pin}
        return bool(
            (await self.request("POST", f"{phone_number_id}/register", token=token, json=body)).get("success")
        )

    async def deregister(self, phone_number_id: str, token: str) -> bool:
        return bool((await self.request("POST", f"{phone_number_id}/deregister", token=token)).get("success"))

    async def set_two_step_pin(self, phone_number_id: str, token: str, pin: str) -> bool:
        return bool(
            (await self.request("POST", phone_number_id, token=token, json={"pin": pin})).get("success")
        )

    # -- templates -----------------------------------------------------------------------------

    async def templates(self, waba_id: str, token: str, *, name: str | None = None) -> list[TemplateInfo]:
        params = {"fields": "id,name,language,status,category,parameter_format,components"}
        if name is not None:
            params["name"] = name
        items = await self._paged(f"{waba_id}/message_templates", token=token, params=params)
        return [TemplateInfo.model_validate(item) for item in items]

    async def create_template(self, waba_id: str, token: str, template: dict[str, Any]) -> TemplateCreated:
        return await self._model(
            TemplateCreated, "POST", f"{waba_id}/message_templates", token=token, json=template
        )

    async def template(self, template_id: str, token: str) -> TemplateInfo:
        params = {
            "fields": "id,name,language,status,category,parameter_format,components,quality_score,rejected_reason"
        }
        return await self._model(TemplateInfo, "GET", template_id, token=token, params=params)

    async def edit_template(
        self,
        template_id: str,
        token: str,
        *,
        components: list[dict[str, Any]] | None = None,
        category: str | None = None,
    ) -> bool:
        body: dict[str, Any] = {}
        if components is not None:
            body["components"] = components
        if category is not None:
            body["category"] = category
        return bool((await self.request("POST", template_id, token=token, json=body)).get("success"))

    async def delete_template(
        self, waba_id: str, token: str, name: str, *, hsm_id: str | None = None
    ) -> bool:
        params = {"name": name} | ({"hsm_id": hsm_id} if hsm_id else {})
        result = await self.request("DELETE", f"{waba_id}/message_templates", token=token, params=params)
        return bool(result.get("success"))

    # -- messages ------------------------------------------------------------------------------

    async def send_message(self, phone_number_id: str, token: str, message: dict[str, Any]) -> SendResult:
        """Send any message body Meta accepts; `messaging_product` is added when missing."""
        body = {"messaging_product": "whatsapp", **message}
        return await self._model(SendResult, "POST", f"{phone_number_id}/messages", token=token, json=body)

    async def mark_read(self, phone_number_id: str, token: str, message_id: str) -> bool:
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        return bool(
            (await self.request("POST", f"{phone_number_id}/messages", token=token, json=body)).get("success")
        )


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
