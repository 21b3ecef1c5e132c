"""MessageTemplate: one WhatsApp message template in one language.

Meta's template rules (reference §5.2) are enforced at admission, in the schema and in CEL, so
that `kubectl apply` refuses what Meta's review would refuse. Components use Meta's structure
with camelCase keys; the operator translates them to Meta's snake_case when it creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from wabaplane.api.common import (
    AGE_COLUMN,
    MESSAGE_COLUMN,
    READY_COLUMNS,
    TENANT_REF_SCHEMA,
    DigitString,
    StatusBase,
    TenantRef,
)
from wabaplane.api.schema import ITEMS_EXTRA, CamelModel, cel, immutable, items_validations, validations

MAX_BODY_PARAMETERS = 64
ExampleValue = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=128)]


def _cel_regex(pattern: str) -> str:
    """A CEL string literal holding a regular expression."""
    return "'" + pattern.replace("\\", "\\\\") + "'"


# Anything that looks like a placeholder; the rules below then say which ones are well formed.
_PLACEHOLDER = _cel_regex(r"\{\{[^{}]*\}\}")
OPEN, CLOSE = r"\{\{", r"\}\}"


class NamedParamExample(CamelModel):
    """An example value for a named placeholder."""

    param_name: ParamName = Field(description="The placeholder's name, without braces.")
    example: ExampleValue = Field(description="An example value Meta's reviewers see.")


# Example names are unique: the API server refuses a second entry with the same paramName.
NAMED_PARAMS_LIST: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["paramName"],
}


class ComponentExample(CamelModel):
    """Example values for a component's placeholders; required whenever it has placeholders."""

    header_text: list[ExampleValue] | None = Field(
        default=None, max_length=1, description="Positional header example: one value."
    )
    header_text_named_params: list[NamedParamExample] | None = Field(
        default=None,
        max_length=1,
        description="Named header example: one entry.",
        json_schema_extra=NAMED_PARAMS_LIST,
    )
    header_handle: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=1, description="Media header sample: a Resumable Upload handle."
    )
    body_text: list[list[ExampleValue]] | None = Field(
        default=None,
        max_length=1,
        description="Positional body examples: one list with a value per placeholder, in order.",
        json_schema_extra={ITEMS_EXTRA: {"maxItems": MAX_BODY_PARAMETERS}},
    )
    body_text_named_params: list[NamedParamExample] | None = Field(
        default=None,
        max_length=MAX_BODY_PARAMETERS,
        description="Named body examples, one per placeholder name.",
        json_schema_extra=NAMED_PARAMS_LIST,
    )


class Button(CamelModel):
    """One button of a BUTTONS component."""

    type: Literal["QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE"] = Field(description="Button type.")
    text: Annotated[str, StringConstraints(min_length=1, max_length=25)] | None = Field(
        default=None, description="Label, at most 25 characters (not used by COPY_CODE)."
    )
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2000)] | None = Field(
        default=None, description="URL buttons: the target; may end with one {{1}} placeholder."
    )
    phone_number: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{1,19}$")] | None = Field(
        default=None, description="PHONE_NUMBER buttons: the number to call, at most 20 characters."
    )
    example: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] | None = Field(
        default=None,
        max_length=1,
        description="URL buttons with a placeholder: the example URL suffix; COPY_CODE: the code "
        "(at most 15 characters).",
    )


BUTTON_RULES = [
    cel(
        "self.type == 'COPY_CODE' || has(self.text)",
        "QUICK_REPLY, URL and PHONE_NUMBER buttons need text",
    ),
    cel("self.type != 'URL' || has(self.url)", "URL buttons need url"),
    cel("self.type == 'URL' || !has(self.url)", "only URL buttons take url"),
    cel("self.type != 'PHONE_NUMBER' || has(self.phoneNumber)", "PHONE_NUMBER buttons need phoneNumber"),
    cel(
        "self.type == 'PHONE_NUMBER' || !has(self.phoneNumber)", "only PHONE_NUMBER buttons take phoneNumber"
    ),
    cel(
        "self.type != 'COPY_CODE' || (has(self.example) && size(self.example[0]) <= 15)",
        "COPY_CODE buttons need an example code of at most 15 characters",
    ),
    cel(
        "!has(self.url) || !self.url.matches('\\\\{\\\\{') || self.url.matches('^[^{}]*\\\\{\\\\{1\\\\}\\\\}$')",
        "a URL button may hold one placeholder, {{1}}, only at the end of the url",
    ),
    cel(
        "!has(self.url) || !self.url.matches('\\\\{\\\\{') || has(self.example)",
        "a URL button with a {{1}} placeholder needs an example",
    ),
]

MAX_BUTTONS = 10
_BUTTON_INDEXES = str(list(range(MAX_BUTTONS)))

BUTTON_LIST_RULES = [
    cel("self.filter(b, b.type == 'URL').size() <= 2", "at most 2 URL buttons are allowed"),
    cel("self.filter(b, b.type == 'PHONE_NUMBER').size() <= 1", "at most 1 PHONE_NUMBER button is allowed"),
    cel("self.filter(b, b.type == 'COPY_CODE').size() <= 1", "at most 1 COPY_CODE button is allowed"),
    cel(
        # No button other than a quick reply may stand between two quick replies. Loops run over a
        # literal index list because CEL cannot bound the cost of map() over the buttons.
        f"{_BUTTON_INDEXES}.all(i, i >= self.size() || self[i].type == 'QUICK_REPLY' || "
        f"!{_BUTTON_INDEXES}.exists(j, j < i && self[j].type == 'QUICK_REPLY') || "
        f"!{_BUTTON_INDEXES}.exists(j, j > i && j < self.size() && self[j].type == 'QUICK_REPLY'))",
        "QUICK_REPLY buttons must be grouped together (e.g. QUICK_REPLY, QUICK_REPLY, URL; "
        "not QUICK_REPLY, URL, QUICK_REPLY)",
    ),
]


class Component(CamelModel):
    """A template component, as in Meta's API with camelCase keys."""

    type: Literal["HEADER", "BODY", "FOOTER", "BUTTONS"] = Field(description="Component type.")
    format: Literal["TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION"] | None = Field(
        default=None, description="HEADER only: what the header shows."
    )
    text: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None,
        description="HEADER (format TEXT, at most 60 characters), BODY (at most 1024) or FOOTER "
        "(at most 60) text, with {{1}}-style or {{name}}-style placeholders.",
    )
    example: ComponentExample | None = Field(default=None, description="Example placeholder values.")
    buttons: list[Button] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BUTTONS,
        description="BUTTONS only: at most 10 buttons.",
        json_schema_extra={**items_validations(*BUTTON_RULES), **validations(*BUTTON_LIST_RULES)},
    )


COMPONENT_RULES = [
    cel("self.type == 'HEADER' || !has(self.format)", "only a HEADER takes format"),
    cel(
        "self.type != 'HEADER' || has(self.format)",
        "a HEADER needs format (TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION)",
    ),
    cel(
        "self.type != 'HEADER' || (self.format == 'TEXT') == has(self.text)",
        "a HEADER has text exactly when its format is TEXT",
    ),
    cel(
        "self.type != 'HEADER' || !has(self.text) || size(self.text) <= 60",
        "HEADER text must be at most 60 characters",
    ),
    cel(
        "self.type != 'HEADER' || !(self.format in ['IMAGE', 'VIDEO', 'DOCUMENT']) || "
        "(has(self.example) && has(self.example.headerHandle))",
        "an IMAGE, VIDEO or DOCUMENT header needs example.headerHandle (a sample uploaded to Meta)",
    ),
    cel("self.type != 'BODY' || has(self.text)", "the BODY needs text"),
    cel("self.type != 'FOOTER' || has(self.text)", "a FOOTER needs text"),
    cel(
        "self.type != 'FOOTER' || size(self.text) <= 60",
        "FOOTER text must be at most 60 characters",
    ),
    cel("self.type != 'BUTTONS' || has(self.buttons)", "a BUTTONS component needs buttons"),
    cel("self.type == 'BUTTONS' || !has(self.buttons)", "only a BUTTONS component takes buttons"),
    cel("self.type != 'BUTTONS' || !has(self.text)", "a BUTTONS component takes no text"),
    cel(
        f"!has(self.text) || self.text.findAll({_cel_regex(OPEN)}).size() == self.text.findAll({_PLACEHOLDER}).size()"
        f" && self.text.findAll({_cel_regex(CLOSE)}).size() == self.text.findAll({_PLACEHOLDER}).size()",
        "text has unbalanced placeholder braces: every {{ must be closed by }}",
    ),
    cel(
        "self.type != 'BODY' || !(self.text.matches('^\\\\s*\\\\{\\\\{') || self.text.matches('\\\\}\\\\}\\\\s*$'))",
        "the BODY must not start or end with a placeholder; add text before and after it",
    ),
    cel(
        "!has(self.text) || !self.text.matches('\\\\}\\\\}\\\\s*\\\\{\\\\{')",
        "placeholders must be separated by text: Meta rejects adjacent ones such as {{1}}{{2}}",
    ),
    cel(
        f"self.type != 'HEADER' || !has(self.text) || self.text.findAll({_PLACEHOLDER}).size() <= 1",
        "a HEADER text may hold at most one placeholder",
    ),
]


def _for_text_components(condition: str) -> str:
    """A rule over every HEADER and BODY text of the spec (the components that take examples)."""
    return f"self.components.all(c, !has(c.text) || c.type == 'FOOTER' || ({condition}))"


# CEL's cost estimator cannot bound loops over findAll() results, so the positional rules iterate
# over literal lists of the placeholders {{1}} .. {{MAX_POSITIONAL}} instead; a well-formedness
# rule refuses larger numbers.
MAX_POSITIONAL = 99
_POSITIONAL = "[" + ", ".join(f"'{{{{{k}}}}}'" for k in range(1, MAX_POSITIONAL + 1)) + "]"
_FOLLOWING = "[" + ", ".join(str(k) for k in range(1, MAX_POSITIONAL)) + "]"
_COUNT = f"c.text.findAll({_PLACEHOLDER}).size()"
_MALFORMED_POSITIONAL = _cel_regex(r"\{\{([^}]*[^0-9}][^}]*|0[0-9]*|[0-9]{3,}|)\}\}")
_MALFORMED_NAMED = _cel_regex(r"\{\{([^}]*[^a-z0-9_}][^}]*|[0-9_][^}]*|)\}\}")


def _named_examples_match(examples: str) -> str:
    """Each example names a placeholder used exactly once, and there are as many as placeholders.

    Example names are unique (a list-map keyed by paramName), so this also proves the
    placeholders are unique.
    """
    return (
        f"has({examples}) && {examples}.size() == {_COUNT} && {examples}.all(e, "
        "c.text.indexOf('{{' + e.paramName + '}}') >= 0 && "
        "c.text.indexOf('{{' + e.paramName + '}}') == c.text.lastIndexOf('{{' + e.paramName + '}}'))"
    )


SPEC_RULES = [
    cel("self.components.filter(c, c.type == 'BODY').size() == 1", "components must hold exactly one BODY"),
    cel(
        "self.components.filter(c, c.type == 'HEADER').size() <= 1", "components may hold at most one HEADER"
    ),
    cel(
        "self.components.filter(c, c.type == 'FOOTER').size() <= 1", "components may hold at most one FOOTER"
    ),
    cel(
        "self.components.filter(c, c.type == 'BUTTONS').size() <= 1",
        "components may hold at most one BUTTONS component",
    ),
    cel(
        "self.parameterFormat != 'POSITIONAL' || "
        + _for_text_components(f"!c.text.matches({_MALFORMED_POSITIONAL})"),
        f"POSITIONAL placeholders must be numbers from 1 to {MAX_POSITIONAL} such as {{{{1}}}}; use "
        "parameterFormat NAMED for {{name}} placeholders",
    ),
    cel(
        "self.parameterFormat != 'POSITIONAL' || "
        + _for_text_components(
            f"{_FOLLOWING}.all(i, !c.text.contains({_POSITIONAL}[i]) || c.text.contains({_POSITIONAL}[i - 1]))"
            f" && {_POSITIONAL}.all(p, c.text.indexOf(p) == c.text.lastIndexOf(p))"
        ),
        "POSITIONAL placeholders must be numbered {{1}}, {{2}}, ... without gaps, each used once",
    ),
    cel(
        "self.parameterFormat != 'NAMED' || " + _for_text_components(f"!c.text.matches({_MALFORMED_NAMED})"),
        "NAMED placeholders must be lowercase names such as {{first_name}} (letters, digits and _, "
        "starting with a letter)",
    ),
    cel(
        "self.parameterFormat != 'POSITIONAL' || "
        + _for_text_components(
            f"{_COUNT} == 0 || (has(c.example) && (c.type == 'BODY' ? "
            f"(has(c.example.bodyText) && c.example.bodyText[0].size() == {_COUNT}) : "
            f"(has(c.example.headerText) && c.example.headerText.size() == {_COUNT})))"
        ),
        "POSITIONAL placeholders need examples: example.bodyText must hold one list with a value for "
        "each BODY placeholder, example.headerText one value for the HEADER placeholder",
    ),
    cel(
        "self.parameterFormat != 'NAMED' || "
        + _for_text_components(
            f"{_COUNT} == 0 || (has(c.example) && (c.type == 'BODY' ? "
            f"({_named_examples_match('c.example.bodyTextNamedParams')}) : "
            f"({_named_examples_match('c.example.headerTextNamedParams')})))"
        ),
        "NAMED placeholders need examples, and each name may be used once: example.bodyTextNamedParams "
        "(and headerTextNamedParams for the HEADER) must name each placeholder exactly once",
    ),
]


class MessageTemplateSpec(CamelModel):
    """The desired state of a template."""

    model_config = CamelModel.model_config | ConfigDict(json_schema_extra=validations(*SPEC_RULES))

    tenant_ref: TenantRef = Field(
        description="The Tenant owning this template, in the same namespace. Immutable.",
        json_schema_extra=TENANT_REF_SCHEMA,
    )
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,512}$")] = Field(
        description="Template name at Meta: lowercase letters, digits and _, at most 512. Immutable.",
        json_schema_extra=validations(immutable("name")),
    )
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")] = Field(
        description="Language code, e.g. en_US, en, pt_BR. Immutable.",
        json_schema_extra=validations(immutable("language")),
    )
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"] = Field(
        description="The category asked for; Meta may decide otherwise (see status.category)."
    )
    parameter_format: Literal["POSITIONAL", "NAMED"] = Field(
        default="POSITIONAL", description="{{1}}-style (POSITIONAL) or {{name}}-style (NAMED) placeholders."
    )
    components: list[Component] = Field(
        min_length=1,
        max_length=4,
        description="HEADER (optional), BODY (required), FOOTER (optional), BUTTONS (optional).",
        json_schema_extra=items_validations(*COMPONENT_RULES),
    )


class MessageTemplateStatus(StatusBase):
    """What the operator observed at Meta and from webhooks."""

    template_id: DigitString | None = Field(default=None, description="Meta's template id (hsm_id).")
    template_status: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Meta's review status: PENDING, APPROVED, REJECTED, PAUSED, DISABLED, ..."
    )
    rejected_reason: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Why Meta rejected, paused or disabled the template."
    )
    quality_score: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="GREEN, YELLOW, RED or UNKNOWN."
    )
    category: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="The category Meta decided."
    )
    last_event_time: int | None = Field(
        default=None, description="Meta's time of the last management event applied (older ones are ignored)."
    )
    last_edited_at: datetime | None = Field(
        default=None, description="When the operator last edited the template at Meta (edit limits apply)."
    )


PRINTER_COLUMNS: list[dict[str, Any]] = [
    *READY_COLUMNS,
    {"name": "Tenant", "type": "string", "jsonPath": ".spec.tenantRef.name"},
    {"name": "Template", "type": "string", "jsonPath": ".spec.name"},
    {"name": "Language", "type": "string", "jsonPath": ".spec.language"},
    {"name": "Status", "type": "string", "jsonPath": ".status.templateStatus"},
    {"name": "Category", "type": "string", "priority": 1, "jsonPath": ".status.category"},
    MESSAGE_COLUMN,
    AGE_COLUMN,
]
