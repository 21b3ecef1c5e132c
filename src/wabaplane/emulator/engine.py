"""The emulator's behaviour: Meta's Graph API semantics over the in-memory world.

Every public method either returns the JSON Meta would answer or raises GraphError with Meta's
code. The HTTP layer (graph.py) only parses requests and renders results.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import time
from typing import Any

from wabaplane.emulator import templates as tpl
from wabaplane.emulator.config import EmulatorSettings
from wabaplane.emulator.state import (
    Business,
    Phone,
    SentMessage,
    SignupCode,
    Subscription,
    Template,
    Token,
    Waba,
    World,
    digits,
)
from wabaplane.emulator.webhooks import OVERRIDABLE_FIELDS, Change, Dispatcher
from wabaplane.meta.envelope import (
    GraphError,
    invalid_parameter,
    invalid_token,
    missing_parameter,
    not_found,
)
from wabaplane.meta.template_rules import body_parameter_count, header_parameter_count
from wabaplane.ratelimit import SlidingWindow, TokenBucket

MANAGEMENT = "whatsapp_business_management"
MESSAGING = "whatsapp_business_messaging"
SEND_TYPES = {
    "text", "image", "audio", "video", "document", "sticker", "location", "contacts", "interactive",
    "template", "reaction",
}  # fmt: skip
APPROVED_NAME_REUSE_BAN_SECONDS = 30 * 24 * 3600


class Emulator:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        # Ids, wamids and shuffles only: reproducible with random_seed, never used for secrets.
        self.rng = random.Random(settings.random_seed)  # noqa: S311
        self.world = World(self.rng)
        self.dispatcher = Dispatcher(settings)
        self.sent_requests: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.dispatcher.start()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dispatcher.close()

    def later(self, delay: float, callback: Any, *args: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            callback(*args)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- authentication ----------------------------------------------------------------------

    def app_token(self) -> str:
        return f"{self.settings.app_id}|{self.settings.app_secret}"

    def authenticate(self, value: str | None) -> Token | None:
        """The token for a request; None for the app token. Raises 190 for anything invalid."""
        if not value:
            raise GraphError(code=190, details="An active access token must be used", message=(
                "An active access token must be used to query information about the current user."
            ))  # fmt: skip
        if value == self.app_token():
            return None
        token = self.world.tokens.get(value)
        if token is None:
            raise invalid_token("Invalid OAuth access token - Cannot parse access token")
        if token.revoked:
            raise invalid_token("Error validating access token: The session has been invalidated")
        if not token.valid(time.time()):
            raise GraphError(code=190, subcode=463, details="Session has expired", message=(
                "Error validating access token: Session has expired"
            ))  # fmt: skip
        return token

    def require_waba(self, token: Token | None, waba_id: str, scope: str, method: str) -> Waba:
        waba = self.world.wabas.get(waba_id)
        if waba is None:
            raise not_found(waba_id, method)
        if token is None:
            raise GraphError(code=200, details="An app access token cannot act on a WABA", message=(
                "(#200) Permissions error"
            ))  # fmt: skip
        allowed = token.management_wabas if scope == MANAGEMENT else token.messaging_wabas
        if waba_id not in allowed:
            raise GraphError(
                code=200,
                details=f"The access token does not have {scope} access to WhatsApp Business Account {waba_id}",
                message="(#200) Permissions error",
            )
        return waba

    def count_management_call(self, waba_id: str) -> None:
        window = self.world.management_windows.setdefault(
            waba_id, SlidingWindow(self.settings.limits.management_calls_per_hour, 3600)
        )
        wait = window.try_acquire()
        if wait is not None:
            raise GraphError(
                code=80007,
                details=f"Rate limit of {window.limit} calls per hour for this WhatsApp Business Account reached",
                retry_after=int(wait) + 1,
            )

    # -- OAuth and tokens ----------------------------------------------------------------------

    def oauth_access_token(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("client_id") != self.settings.app_id:
            raise GraphError(code=101, details="Error validating application. Invalid application ID.")
        if params.get("client_secret") != self.settings.app_secret:
            raise GraphError(code=1, details="Error validating client secret.", error_type="OAuthException")
        if params.get("grant_type") == "client_credentials":
            return {"access_token": self.app_token(), "token_type": "bearer"}
        code_value = params.get("code")
        if not code_value:
            raise missing_parameter("code")
        code = self.world.codes.get(code_value)
        if code is None or code.used or time.time() > code.expires_at:
            reason = (
                "has expired"
                if code is not None and not code.used
                else "has been used"
                if code
                else "is invalid"
            )
            raise GraphError(code=100, subcode=36007, details=f"This authorization code {reason}.")
        code.used = True
        token = self.issue_token(
            kind="BUSINESS_INTEGRATION", waba_ids=code.waba_ids, expires_in=code.expires_in
        )
        response: dict[str, Any] = {"access_token": token.value, "token_type": "bearer"}
        if code.expires_in:
            response["expires_in"] = code.expires_in
        return response

    def issue_token(
        self,
        *,
        kind: str = "SYSTEM_USER",
        waba_ids: list[str],
        messaging_waba_ids: list[str] | None = None,
        expires_in: int | None = None,
        value: str | None = None,
    ) -> Token:
        now = int(time.time())
        token = Token(
            value=value or self.world.new_token_value(),
            kind=kind,
            user_id=self.world.new_id(),
            scopes=["business_management", MANAGEMENT, MESSAGING],
            management_wabas=list(waba_ids),
            messaging_wabas=list(waba_ids if messaging_waba_ids is None else messaging_waba_ids),
            issued_at=now,
            expires_at=now + expires_in if expires_in else 0,
        )
        self.world.tokens[token.value] = token
        return token

    def issue_signup_code(
        self,
        business_id: str,
        waba_ids: list[str],
        expires_in: int | None,
        valid_for: float | None = None,
        value: str | None = None,
    ) -> str:
        """A one-time code; valid for Meta's 30 s unless `valid_for` says otherwise (seeds for demos).

        `value` fixes the code, so that a seed and the Secrets of examples/ can name the same one.
        """
        if value is not None and value in self.world.codes:
            raise invalid_parameter("a signup code with this value already exists")
        for waba_id in waba_ids:
            if waba_id not in self.world.wabas:
                raise invalid_parameter(f"unknown WABA {waba_id}")
        code = SignupCode(
            code=value or self.world.new_code(),
            business_id=business_id,
            waba_ids=waba_ids,
            expires_at=time.time() + (valid_for or self.settings.limits.signup_code_ttl_seconds),
            expires_in=expires_in,
        )
        self.world.codes[code.code] = code
        return code.code

    def debug_token(self, caller: Token | None, input_token: str | None) -> dict[str, Any]:
        if not input_token:
            raise missing_parameter("input_token")
        token = self.world.tokens.get(input_token)
        if token is None:
            return {
                "data": {"is_valid": False, "error": {"code": 190, "message": "Invalid OAuth access token."}}
            }
        # Newest onboarded WABA first, as Meta lists them.
        management = sorted(token.management_wabas, key=self._onboarded_order, reverse=True)
        messaging = sorted(token.messaging_wabas, key=self._onboarded_order, reverse=True)
        return {
            "data": {
                "app_id": self.settings.app_id,
                "type": token.kind if token.kind != "BUSINESS_INTEGRATION" else "SYSTEM_USER",
                "application": "wabaplane emulator",
                "data_access_expires_at": 0,
                "expires_at": token.expires_at,
                "is_valid": token.valid(time.time()),
                "issued_at": token.issued_at,
                "scopes": token.scopes,
                "granular_scopes": [
                    {"scope": "business_management"},
                    {"scope": MANAGEMENT, "target_ids": management},
                    {"scope": MESSAGING, "target_ids": messaging},
                ],
                "user_id": token.user_id,
            }
        }

    def _onboarded_order(self, waba_id: str) -> int:
        return list(self.world.wabas).index(waba_id) if waba_id in self.world.wabas else -1

    # -- WABAs, subscriptions, phone numbers -------------------------------------------------

    def get_waba(self, token: Token | None, waba_id: str) -> dict[str, Any]:
        waba = self.require_waba(token, waba_id, MANAGEMENT, "GET")
        self.count_management_call(waba_id)
        return {"id": waba.id, "name": waba.name, "currency": waba.currency, "timezone_id": waba.timezone_id}

    def list_subscribed_apps(self, token: Token | None, waba_id: str) -> dict[str, Any]:
        waba = self.require_waba(token, waba_id, MANAGEMENT, "GET")
        self.count_management_call(waba_id)
        data = []
        for app_id, subscription in waba.subscriptions.items():
            item: dict[str, Any] = {
                "whatsapp_business_api_data": {
                    "id": app_id,
                    "link": f"https://www.facebook.com/games/?app_id={app_id}",
                    "name": "wabaplane emulator app",
                }
            }
            if subscription.override_callback_uri:
                item["override_callback_uri"] = subscription.override_callback_uri
            data.append(item)
        return {"data": data}

    async def subscribe_app(self, token: Token | None, waba_id: str, body: dict[str, Any]) -> dict[str, Any]:
        waba = self.require_waba(token, waba_id, MANAGEMENT, "POST")
        self.count_management_call(waba_id)
        override = body.get("override_callback_uri")
        if override:
            if self.settings.app_id not in waba.subscriptions:
                raise invalid_parameter("The app must be subscribed to the WABA before setting an override")
            if len(str(override)) > 200:
                raise invalid_parameter("override_callback_uri must be at most 200 characters")
            verify_token = str(body.get("verify_token", ""))
            if not await self.dispatcher.verify(str(override), verify_token):
                raise GraphError(code=2200, details="Callback verification failed", message=(
                    "(#2200) Callback verification failed: the URL did not answer the challenge"
                ))  # fmt: skip
            waba.subscriptions[self.settings.app_id] = Subscription(str(override), verify_token)
        else:
            # A POST without a body subscribes the app, or removes its override.
            waba.subscriptions[self.settings.app_id] = Subscription()
        return {"success": True}

    def unsubscribe_app(self, token: Token | None, waba_id: str) -> dict[str, Any]:
        waba = self.require_waba(token, waba_id, MANAGEMENT, "DELETE")
        self.count_management_call(waba_id)
        waba.subscriptions.pop(self.settings.app_id, None)
        return {"success": True}

    def list_phone_numbers(self, token: Token | None, waba_id: str, query: dict[str, str]) -> dict[str, Any]:
        self.require_waba(token, waba_id, MANAGEMENT, "GET")
        self.count_management_call(waba_id)
        phones = [p for p in self.world.phones.values() if p.waba_id == waba_id]
        ascending = "last_onboarded_time_ascending" in query.get("sort", "")
        phones.sort(key=lambda p: p.onboarded_at, reverse=not ascending)
        fields = _fields(query, ["verified_name", "display_phone_number", "id", "quality_rating"])
        return paginate([self.phone_fields(p, fields) for p in phones], query)

    def require_phone(self, token: Token | None, phone_id: str, scope: str, method: str) -> Phone:
        phone = self.world.phones.get(phone_id)
        if phone is None:
            raise not_found(phone_id, method)
        self.require_waba(token, phone.waba_id, scope, method)
        return phone

    def get_phone(self, token: Token | None, phone_id: str, query: dict[str, str]) -> dict[str, Any]:
        phone = self.require_phone(token, phone_id, MANAGEMENT, "GET")
        default = [
            "verified_name", "code_verification_status", "display_phone_number", "quality_rating",
            "platform_type", "throughput", "id",
        ]  # fmt: skip
        return self.phone_fields(phone, _fields(query, default))

    def phone_fields(self, phone: Phone, fields: list[str]) -> dict[str, Any]:
        webhook_configuration: dict[str, Any] = {"application": self.settings.callback_url or ""}
        if phone.override_callback_uri:
            webhook_configuration["phone_number"] = phone.override_callback_uri
        waba_override = self.world.wabas[phone.waba_id].subscriptions.get(self.settings.app_id)
        if waba_override and waba_override.override_callback_uri:
            webhook_configuration["whatsapp_business_account"] = waba_override.override_callback_uri
        available: dict[str, Any] = {
            "id": phone.id,
            "verified_name": phone.verified_name,
            "display_phone_number": phone.formatted_number(),
            "quality_rating": phone.quality_rating,
            "code_verification_status": phone.code_verification_status,
            "platform_type": phone.platform_type,
            "throughput": {"level": phone.throughput_level},
            "status": phone.status,
            "name_status": phone.name_status,
            "whatsapp_business_manager_messaging_limit": phone.messaging_limit,
            "messaging_limit_tier": phone.messaging_limit,
            "account_mode": phone.account_mode,
            "is_official_business_account": False,
            "is_pin_enabled": phone.pin is not None,
            "webhook_configuration": webhook_configuration,
            "health_status": {"can_send_message": "AVAILABLE" if phone.registered else "BLOCKED"},
        }
        return {name: available[name] for name in fields if name in available}

    async def update_phone(self, token: Token | None, phone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        phone = self.require_phone(token, phone_id, MANAGEMENT, "POST")
        if "pin" in body:
            pin = str(body["pin"])
            if not (len(pin) == 6 and pin.isdigit()):
                raise GraphError(code=100, details="The PIN must be 6 digits")
            phone.pin = pin
            self.emit(phone.waba_id, "security", {"display_phone_number": phone.display_phone_number,
                                                   "event": "PIN_CHANGED"})  # fmt: skip
        if "webhook_configuration" in body:
            configuration = body["webhook_configuration"]
            uri = (
                str(configuration.get("override_callback_uri", "")) if isinstance(configuration, dict) else ""
            )
            if uri:
                verify_token = str(configuration.get("verify_token", ""))
                if not await self.dispatcher.verify(uri, verify_token):
                    raise GraphError(code=2200, details="Callback verification failed")
                phone.override_callback_uri, phone.override_verify_token = uri, verify_token
            else:
                phone.override_callback_uri = phone.override_verify_token = None
        return {"success": True}

    def register(
        self, token: Token | None, phone_id: str, body: dict[str, Any], register: bool
    ) -> dict[str, Any]:
        phone = self.require_phone(token, phone_id, MANAGEMENT, "POST")
        if body.get("messaging_product", "whatsapp") != "whatsapp":
            raise invalid_parameter("messaging_product must be whatsapp")
        calls = phone.registration_calls
        now = time.time()
        while calls and calls[0] <= now - 72 * 3600:
            calls.popleft()
        if len(calls) >= self.settings.limits.registrations_per_72_hours:
            raise GraphError(
                code=133016, details="Too many register or deregister calls for this number in 72 hours"
            )
        calls.append(now)
        if not register:
            phone.registered = False
            return {"success": True}
        pin = body.get("pin")
        if pin is None:
            raise missing_parameter("pin")
        pin = str(pin)
        if not (len(pin) == 6 and pin.isdigit()):
            raise GraphError(code=100, details="The PIN must be 6 digits")
        if phone.pin is not None and phone.pin != pin:
            raise GraphError(code=133005, details="The two-step verification PIN is incorrect")
        phone.pin = pin
        phone.registered = True
        return {"success": True}

    # -- templates ---------------------------------------------------------------------------

    def list_templates(self, token: Token | None, waba_id: str, query: dict[str, str]) -> dict[str, Any]:
        self.require_waba(token, waba_id, MANAGEMENT, "GET")
        self.count_management_call(waba_id)
        found = self.world.waba_templates(waba_id)
        if "name" in query:
            found = [t for t in found if t.name == query["name"]]
        if "status" in query:
            found = [t for t in found if t.status == query["status"].upper()]
        if "language" in query:
            found = [t for t in found if t.language == query["language"]]
        default = ["name", "parameter_format", "components", "language", "status", "category", "id"]
        fields = _fields(query, default)
        return paginate([{k: v for k, v in t.as_graph().items() if k in fields} for t in found], query)

    def create_template(self, token: Token | None, waba_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.require_waba(token, waba_id, MANAGEMENT, "POST")
        self.count_management_call(waba_id)
        window = self.world.template_create_windows.setdefault(
            waba_id, SlidingWindow(self.settings.limits.template_creates_per_hour, 3600)
        )
        components = tpl.normalise_components(body.get("components"))
        name, language, category = body.get("name"), body.get("language"), body.get("category")
        if not isinstance(language, str) or not language:
            raise missing_parameter("language")
        tpl.check_creation(name, category, components)
        assert isinstance(name, str)
        assert isinstance(category, str)
        banned_since = self.world.deleted_names.get((waba_id, name))
        if banned_since is not None and time.time() - banned_since < APPROVED_NAME_REUSE_BAN_SECONDS:
            raise tpl.creation_error(
                f"The name {name} was deleted recently and cannot be reused for 30 days", 2388023
            )
        if any(t.name == name and t.language == language for t in self.world.waba_templates(waba_id)):
            raise tpl.creation_error(f"Content in {language} already exists for {name}", 2388024)
        wait = window.try_acquire()
        if wait is not None:
            raise GraphError(
                code=80007, details="At most 100 templates per hour per WABA", retry_after=int(wait) + 1
            )
        parameter_format = str(body.get("parameter_format", "POSITIONAL")).upper()
        template = Template(
            id=self.world.new_id(),
            waba_id=waba_id,
            name=name,
            language=language,
            category=category.upper(),
            parameter_format=parameter_format,
            components=components,
        )
        self.world.templates[template.id] = template
        self._schedule_review(template)
        return {"id": template.id, "status": template.status, "category": template.category}

    def _schedule_review(self, template: Template) -> None:
        if self.settings.auto_review:
            self.later(self.settings.template_review_seconds, self.review_now, template.id, None, None)

    def review_now(self, template_id: str, decision: str | None, reason: str | None) -> Template:
        template = self.world.templates.get(template_id)
        if template is None:
            raise not_found(template_id, "POST")
        if decision is None:
            duplicate = template.category != "AUTHENTICATION" and any(
                other.id != template.id
                and tpl.body_footer(other.components) == tpl.body_footer(template.components)
                for other in self.world.waba_templates(template.waba_id)
            )
            rejection = tpl.review(template.components, template.parameter_format, duplicate)
            decision, reason = ("REJECTED", rejection) if rejection else ("APPROVED", "NONE")
        self.set_template_status(template, decision, reason or "NONE")
        return template

    def set_template_status(self, template: Template, status: str, reason: str) -> None:
        template.status = status
        template.rejected_reason = reason if status == "REJECTED" else "NONE"
        value: dict[str, Any] = {
            "event": status,
            "message_template_id": int(template.id),
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": reason,
            "message_template_category": template.category,
        }
        if status == "REJECTED" and reason == "INVALID_FORMAT":
            value["rejection_info"] = {
                "reason": "The template's placeholders or examples are not formatted correctly.",
                "recommendation": "Number placeholders sequentially, separate them with text and give examples.",
            }
        self.emit(template.waba_id, "message_template_status_update", value)

    def set_template_quality(self, template: Template, score: str) -> None:
        previous, template.quality_score = template.quality_score, score
        self.emit(template.waba_id, "message_template_quality_update", {
            "previous_quality_score": previous,
            "new_quality_score": score,
            "message_template_id": int(template.id),
            "message_template_name": template.name,
            "message_template_language": template.language,
        })  # fmt: skip

    def delete_template(self, token: Token | None, waba_id: str, query: dict[str, str]) -> dict[str, Any]:
        self.require_waba(token, waba_id, MANAGEMENT, "DELETE")
        self.count_management_call(waba_id)
        name = query.get("name")
        if not name:
            raise missing_parameter("name")
        hsm_id = query.get("hsm_id")
        victims = [
            t
            for t in self.world.waba_templates(waba_id)
            if t.name == name and (hsm_id is None or t.id == hsm_id)
        ]
        if not victims:
            raise GraphError(code=100, subcode=2593002, details=f"Message template {name} not found")
        if any(t.status == "DISABLED" for t in victims):
            raise GraphError(code=100, details="A DISABLED template cannot be deleted")
        for template in victims:
            if template.status == "APPROVED":
                self.world.deleted_names[(waba_id, name)] = time.time()
            del self.world.templates[template.id]
        return {"success": True}

    def require_template(self, token: Token | None, template_id: str, method: str) -> Template:
        template = self.world.templates.get(template_id)
        if template is None:
            raise not_found(template_id, method)
        self.require_waba(token, template.waba_id, MANAGEMENT, method)
        return template

    def get_template(self, token: Token | None, template_id: str, query: dict[str, str]) -> dict[str, Any]:
        template = self.require_template(token, template_id, "GET")
        graph = {**template.as_graph(), "quality_score": {"score": template.quality_score},
                 "rejected_reason": template.rejected_reason}  # fmt: skip
        fields = _fields(query, list(template.as_graph()))
        return {k: v for k, v in graph.items() if k in fields or k == "id"}

    def edit_template(self, token: Token | None, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        template = self.require_template(token, template_id, "POST")
        if template.status not in {"APPROVED", "REJECTED", "PAUSED"}:
            raise GraphError(code=100, details=f"A template in status {template.status} cannot be edited")
        now = time.time()
        if template.status == "APPROVED":
            if "category" in body and str(body["category"]).upper() != template.category:
                raise GraphError(code=100, details="The category of an approved template cannot be edited")
            limits = self.settings.limits
            if sum(1 for at in template.edits if now - at < 24 * 3600) >= limits.approved_edits_per_day:
                raise GraphError(
                    code=100, subcode=2388099, details="An approved template can be edited once per 24 hours"
                )
            if (
                sum(1 for at in template.edits if now - at < 30 * 24 * 3600)
                >= limits.approved_edits_per_30_days
            ):
                raise GraphError(
                    code=100,
                    subcode=2388099,
                    details="An approved template can be edited 10 times per 30 days",
                )
        if "components" in body:
            components = tpl.normalise_components(body["components"])
            tpl.check_creation(template.name, body.get("category", template.category), components)
            template.components = components
        if "category" in body:
            template.category = str(body["category"]).upper()
        if template.status == "APPROVED":
            template.edits.append(now)
        template.status = "PENDING"
        self._schedule_review(template)
        return {"success": True}

    # -- messages ----------------------------------------------------------------------------

    def send(self, token: Token | None, phone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        phone = self.require_phone(token, phone_id, MESSAGING, "POST")
        if body.get("messaging_product") != "whatsapp":
            raise GraphError(
                code=100, details="The parameter messaging_product is required and must be whatsapp"
            )
        if body.get("status") == "read":
            message_id = body.get("message_id")
            if not message_id:
                raise GraphError(code=131008, details="message_id is required to mark a message as read")
            if message_id not in self.world.inbound:
                raise GraphError(code=100, details=f"Message {message_id} was not received by this number")
            return {"success": True}
        if not phone.registered:
            raise GraphError(code=133010, details="The phone number is not registered on the Cloud API")
        to = body.get("to")
        if not isinstance(to, str) or not to.strip():
            raise GraphError(code=131008, details="The parameter to is required")
        message_type = body.get("type", "text")
        if message_type not in SEND_TYPES:
            raise GraphError(code=100, details=f"Unsupported message type {message_type}")
        content = body.get(message_type)
        if not isinstance(content, dict):
            raise GraphError(code=131008, details=f"The parameter {message_type} is required")
        wa_id = normalise_recipient(to, phone.country_code)
        if wa_id == phone.display_phone_number:
            raise GraphError(code=131021, details="The recipient is the sending number")
        template = self._check_content(phone, message_type, content)
        self._check_rates(phone, wa_id)
        window_open = self.window_open(phone.id, wa_id)
        free_form = message_type != "template"
        if free_form and not window_open and self.settings.window_error_mode == "sync":
            raise GraphError(code=131047, details="Message failed to send because more than 24 hours have passed "
                             "since the customer last replied to this number.")  # fmt: skip
        wamid = self.world.new_wamid()
        message = self.record_sent(phone, to, wa_id, message_type, body, wamid)
        failure = None
        if wa_id in {digits(n) for n in self.settings.undeliverable_numbers}:
            failure = (131026, "Message undeliverable", "The recipient is not a WhatsApp user")
        elif free_form and not window_open:
            failure = (131047, "Re-engagement message", "Message failed to send because more than 24 hours have "
                       "passed since the customer last replied to this number.")  # fmt: skip
        self._schedule_statuses(phone, message, template, window_open, failure, body)
        response: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": wa_id}],
            "messages": [{"id": wamid}],
        }
        if template is not None:
            response["messages"][0]["message_status"] = "accepted"
        return response

    def record_sent(
        self, phone: Phone, to: str, wa_id: str, message_type: str, body: dict[str, Any], wamid: str
    ) -> SentMessage:
        message = SentMessage(wamid, phone.id, to, wa_id, message_type, body, int(time.time()))
        self.world.messages[wamid] = message
        return message

    def window_open(self, phone_id: str, wa_id: str) -> bool:
        last = self.world.windows.get((phone_id, wa_id))
        return last is not None and time.time() - last < self.settings.limits.customer_service_window_seconds

    def _check_rates(self, phone: Phone, wa_id: str) -> None:
        limits = self.settings.limits
        per_second = (
            limits.high_throughput_messages_per_second
            if phone.throughput_level == "HIGH"
            else limits.messages_per_second_per_number
        )
        window = self.world.number_windows.setdefault(phone.id, SlidingWindow(per_second, 1.0))
        window.limit = per_second
        wait = window.try_acquire()
        if wait is not None:
            raise GraphError(code=130429, details=f"Cloud API message throughput of {per_second} mps reached",
                             retry_after=1)  # fmt: skip
        bucket = self.world.pair_buckets.setdefault(
            (phone.id, wa_id), TokenBucket(limits.pair_burst, limits.pair_refill_seconds)
        )
        wait = bucket.try_acquire()
        if wait is not None:
            raise GraphError(code=131056, details="Too many messages sent to this user in a short time",
                             retry_after=int(wait) + 1)  # fmt: skip

    def _check_content(self, phone: Phone, message_type: str, content: dict[str, Any]) -> Template | None:
        if message_type == "text":
            text = content.get("body")
            if not isinstance(text, str) or not text:
                raise GraphError(code=131008, details="The parameter text.body is required")
            if len(text) > 4096:
                raise GraphError(code=100, details="text.body must be at most 4096 characters")
        elif message_type == "interactive":
            check_interactive(content)
        elif message_type == "template":
            return self._check_template_send(phone, content)
        elif message_type in {"image", "audio", "video", "document", "sticker"}:
            if not content.get("id") and not content.get("link"):
                raise GraphError(code=131008, details=f"{message_type} needs an id or a link")
        elif message_type == "reaction":
            if not content.get("message_id"):
                raise GraphError(code=131008, details="reaction.message_id is required")
        elif message_type == "location" and ("latitude" not in content or "longitude" not in content):
            raise GraphError(code=131008, details="location needs latitude and longitude")
        return None

    def _check_template_send(self, phone: Phone, content: dict[str, Any]) -> Template:
        name = content.get("name")
        language = content.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if not name or not code:
            raise GraphError(code=131008, details="template.name and template.language.code are required")
        wanted = str(code).replace("-", "_")
        template = next(
            (
                t
                for t in self.world.waba_templates(phone.waba_id)
                if t.name == name and t.language.replace("-", "_") == wanted
            ),
            None,
        )
        if template is None or template.status in {"PENDING", "REJECTED"}:
            raise GraphError(code=132001, details=f"template name ({name}) does not exist in {code}")
        if template.status == "PAUSED":
            raise GraphError(code=132015, details=f"Template {name} is paused")
        if template.status == "DISABLED":
            raise GraphError(code=132016, details=f"Template {name} is disabled")
        sent: dict[str, int] = {}
        for component in content.get("components") or []:
            if isinstance(component, dict) and component.get("type") in {"body", "header", "BODY", "HEADER"}:
                sent[str(component["type"]).upper()] = len(component.get("parameters") or [])
        expected = {"BODY": body_parameter_count(template.components),
                    "HEADER": header_parameter_count(template.components)}  # fmt: skip
        for part, count in expected.items():
            if sent.get(part, 0) != count:
                raise GraphError(
                    code=132000,
                    details=f"{part.lower()}: number of localizable_params ({sent.get(part, 0)}) does not match "
                    f"the expected number of params ({count})",
                )
        return template

    def _schedule_statuses(
        self,
        phone: Phone,
        message: SentMessage,
        template: Template | None,
        window_open: bool,
        failure: tuple[int, str, str] | None,
        body: dict[str, Any],
    ) -> None:
        sent_at, delivered_at, read_at = self.settings.status_delays
        if failure is not None:
            self.later(sent_at, self.emit_status, phone, message, "failed", None, failure, body)
            return
        category = template.category.lower() if template else "service"
        pricing = {"billable": template is not None or not window_open, "pricing_model": "PMP",
                   "type": "regular" if template is not None else "free_customer_service",
                   "category": category}  # fmt: skip
        steps: list[tuple[str, dict[str, Any] | None]] = [("sent", pricing), ("delivered", pricing)]
        if self.settings.auto_read:
            steps.append(("read", None))
        delays = [sent_at, delivered_at, read_at]
        if self.settings.shuffle_statuses:
            self.rng.shuffle(delays)
        for (status, status_pricing), delay in zip(steps, delays, strict=False):
            self.later(delay, self.emit_status, phone, message, status, status_pricing, None, body)

    def emit_status(
        self,
        phone: Phone,
        message: SentMessage,
        status: str,
        pricing: dict[str, Any] | None,
        failure: tuple[int, str, str] | None,
        body: dict[str, Any],
    ) -> None:
        message.statuses.append(status)
        item: dict[str, Any] = {
            "id": message.wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": message.wa_id,
        }
        if pricing is not None:
            item["pricing"] = pricing
        if body.get("biz_opaque_callback_data"):
            item["biz_opaque_callback_data"] = body["biz_opaque_callback_data"]
        if failure is not None:
            code, title, details = failure
            item["errors"] = [{
                "code": code, "title": title, "message": title, "error_data": {"details": details},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }]  # fmt: skip
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone.display_phone_number, "phone_number_id": phone.id},
            "statuses": [item],
        }
        if failure is None or failure[0] != 131026:  # a non-WhatsApp recipient has no user id
            value["contacts"] = [{"wa_id": message.wa_id,
                                  "user_id": self.business_scoped_user_id(phone, message.wa_id)}]  # fmt: skip
        self.emit(phone.waba_id, "messages", value, phone=phone)

    # -- inbound and webhooks ----------------------------------------------------------------

    def inbound(self, phone_id: str, sender: str, name: str, message: dict[str, Any]) -> str:
        phone = self.world.phones.get(phone_id)
        if phone is None:
            raise not_found(phone_id, "POST")
        wa_id = digits(sender)
        wamid = self.world.new_wamid()
        user_id = self.business_scoped_user_id(phone, wa_id)
        full = {
            "from": wa_id,
            "from_user_id": user_id,
            "id": wamid,
            "timestamp": str(int(time.time())),
            **message,
        }
        full.setdefault("type", "text")
        self.world.inbound[wamid] = full
        self.world.windows[(phone.id, wa_id)] = time.time()
        self.emit(phone.waba_id, "messages", {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": phone.display_phone_number, "phone_number_id": phone.id},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id, "user_id": user_id}],
            "messages": [full],
        }, phone=phone)  # fmt: skip
        return wamid

    def business_scoped_user_id(self, phone: Phone, wa_id: str) -> str:
        """A BSUID (e.g. US.1349...): stable per business portfolio and user, as Meta's newer payloads carry."""
        business_id = self.world.wabas[phone.waba_id].business_id
        number = int(hashlib.sha256(f"{business_id}:{wa_id}".encode()).hexdigest(), 16) % 10**19
        return f"{country_of(wa_id)}.{number:019d}"

    def emit(
        self,
        waba_id: str,
        field: str,
        value: dict[str, Any],
        *,
        phone: Phone | None = None,
        entry_id: str | None = None,
    ) -> str | None:
        """Queue a webhook change; return the URL it goes to, or None when nobody would receive it."""
        waba = self.world.wabas.get(waba_id)
        fields = self.settings.callback_fields
        if fields is not None and field not in fields:
            return None
        subscription = waba.subscriptions.get(self.settings.app_id) if waba else None
        if subscription is None and field != "account_update":
            return None  # Meta sends nothing for a WABA the app is not subscribed to.
        url = self.settings.callback_url
        if field in OVERRIDABLE_FIELDS:
            if phone is not None and phone.override_callback_uri:
                url = phone.override_callback_uri
            elif subscription is not None and subscription.override_callback_uri:
                url = subscription.override_callback_uri
        if not url:
            return None
        self.dispatcher.enqueue(Change(entry_id=entry_id or waba_id, field=field, value=value, url=url))
        return url

    # -- seeding -----------------------------------------------------------------------------

    def add_business(self, business_id: str | None, name: str) -> Business:
        business = Business(business_id or self.world.new_id(), name)
        self.world.businesses[business.id] = business
        return business

    def add_waba(self, business_id: str, waba_id: str | None, name: str, subscribed: bool) -> Waba:
        waba = Waba(waba_id or self.world.new_id(), business_id, name)
        if subscribed:
            waba.subscriptions[self.settings.app_id] = Subscription()
        self.world.wabas[waba.id] = waba
        return waba

    def add_phone(self, waba_id: str, **fields: Any) -> Phone:
        fields["display_phone_number"] = digits(str(fields["display_phone_number"]))
        phone = Phone(id=fields.pop("id", None) or self.world.new_id(), waba_id=waba_id, **fields)
        self.world.phones[phone.id] = phone
        return phone


# Calling codes of the countries the seed data and tests use; others fall back to "ZZ".
_COUNTRIES = {"1": "US", "44": "GB", "49": "DE", "55": "BR", "52": "MX", "91": "IN", "351": "PT", "34": "ES"}


def country_of(wa_id: str) -> str:
    for length in (3, 2, 1):
        if wa_id[:length] in _COUNTRIES:
            return _COUNTRIES[wa_id[:length]]
    return "ZZ"


def normalise_recipient(to: str, country_code: str) -> str:
    """Meta accepts +, -, () and spaces; without a leading + the business's country code is prepended."""
    number = digits(to)
    if to.strip().startswith("+") or (number.startswith(country_code) and len(number) > 10):
        return number
    return country_code + number


def check_interactive(content: dict[str, Any]) -> None:
    kind = content.get("type")
    action = content.get("action") or {}
    body = (content.get("body") or {}).get("text", "")
    if kind == "button":
        buttons = action.get("buttons") or []
        if not 1 <= len(buttons) <= 3:
            raise GraphError(code=131009, details="interactive buttons: between 1 and 3 buttons are allowed")
        titles = [str((b.get("reply") or {}).get("title", "")) for b in buttons]
        ids = [str((b.get("reply") or {}).get("id", "")) for b in buttons]
        if any(len(t) > 20 or not t for t in titles) or any(len(i) > 256 or not i for i in ids):
            raise GraphError(code=131009, details="button titles must be 1-20 characters and ids 1-256")
        if len(set(ids)) != len(ids) or len(set(titles)) != len(titles):
            raise GraphError(code=131009, details="button ids and titles must be unique")
        if len(body) > 1024:
            raise GraphError(code=131009, details="interactive body must be at most 1024 characters")
    elif kind == "list":
        sections = action.get("sections") or []
        rows = [row for section in sections for row in section.get("rows") or []]
        if not 1 <= len(sections) <= 10 or not 1 <= len(rows) <= 10:
            raise GraphError(code=131009, details="lists allow at most 10 sections and 10 rows in total")
        if len(str(action.get("button", ""))) > 20:
            raise GraphError(code=131009, details="the list button text must be at most 20 characters")
        for row in rows:
            if len(str(row.get("title", ""))) > 24 or len(str(row.get("description", ""))) > 72:
                raise GraphError(
                    code=131009, details="row titles are at most 24 and descriptions 72 characters"
                )
        if len(body) > 4096:
            raise GraphError(code=131009, details="interactive body must be at most 4096 characters")
    elif kind not in {
        "cta_url",
        "flow",
        "location_request_message",
        "address_message",
        "product",
        "product_list",
    }:
        raise GraphError(code=131009, details=f"unsupported interactive type {kind}")


def _fields(query: dict[str, str], default: list[str]) -> list[str]:
    requested = query.get("fields")
    if not requested:
        return default
    return [name.strip() for name in requested.split(",") if name.strip()] + ["id"]


def paginate(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """Meta's cursor paging: `limit` and `after`/`before` cursors, `next` only when more remain."""
    try:
        limit = max(1, min(int(query.get("limit", "25")), 1000))
        start = int(base64.b64decode(query["after"]).decode()) + 1 if "after" in query else 0
    except (ValueError, KeyError) as error:
        raise invalid_parameter(f"invalid paging parameter: {error}") from None
    page = items[start : start + limit]
    result: dict[str, Any] = {"data": page}
    if page:
        cursors = {
            "before": base64.b64encode(str(start).encode()).decode(),
            "after": base64.b64encode(str(start + len(page) - 1).encode()).decode(),
        }
        result["paging"] = {"cursors": cursors}
        if start + len(page) < len(items):
            result["paging"]["next"] = f"?limit={limit}&after={cursors['after']}"
    return result
