"""The API's OpenAPI document as one readable HTML page, rendered on the server.

``docs_view`` works out what the page shows from the document, as plain values: each tag with
its operations (parameters, request body, answers), the security schemes and the schemas. Every
piece of inline text is a run of ``Span``s (plain text, ``code`` or a link), and the little
Markdown the descriptions use (paragraphs, ``- `` lists, backticks) becomes ``Block``s of them.
``templates/docs.html`` lays them out and escapes every value.

No script and no outside URL: one inline stylesheet (``templates/docs.css``), allowed by its
hash in the page's Content-Security-Policy (``style_source``), so ``/docs`` works under
``default-src 'none'``.
"""

from __future__ import annotations

import hashlib
import re
from base64 import b64encode
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import orjson

TEMPLATE = "docs.html"
_METHOD_ORDER = ("get", "post", "put", "patch", "delete")
_LIMITS = (
    ("minimum", "≥"),
    ("maximum", "≤"),
    ("minLength", "length ≥"),
    ("maxLength", "length ≤"),
    ("minItems", "items ≥"),
    ("maxItems", "items ≤"),
)


@dataclass(frozen=True, slots=True)
class Span:
    """A run of inline text: ``kind`` is ``text``, ``code`` or ``link`` (to ``href``)."""

    text: str
    kind: str = "text"
    href: str = ""


Spans = tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph (``p``, one item) or a list (``ul``, an item per entry)."""

    kind: str
    items: tuple[Spans, ...]


Blocks = tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Field:
    """A parameter of an operation (``where``: query, header) or a property of a schema."""

    name: str
    where: str
    required: bool
    type: Spans
    rules: Spans
    meaning: Spans


@dataclass(frozen=True, slots=True)
class Media:
    kind: str
    type: Spans


@dataclass(frozen=True, slots=True)
class Answer:
    status: str
    description: Blocks
    media: tuple[Media, ...]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    anchor: str
    summary: Spans
    description: Blocks
    credentials: tuple[str, ...]
    parameters: tuple[Field, ...]
    body: tuple[Media, ...]
    answers: tuple[Answer, ...]


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    description: Blocks
    operations: tuple[Operation, ...]


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str
    sent_as: Spans
    description: Spans


@dataclass(frozen=True, slots=True)
class SchemaView:
    name: str
    description: Blocks
    fields: tuple[Field, ...]
    type: Spans  # shown instead of fields when it has none
    closed: bool


@dataclass(frozen=True, slots=True)
class DocsPage:
    title: str
    version: str
    openapi: str
    overview: Blocks
    schemes: tuple[Scheme, ...]
    tags: tuple[Tag, ...]
    schemas: tuple[SchemaView, ...]


def render_page(templates: jinja2.Environment, document: dict[str, Any]) -> str:
    """``document`` as one self-contained HTML page."""
    return templates.get_template(TEMPLATE).render(page=docs_view(document))


def style_source(page: str) -> str:
    """The Content-Security-Policy source that lets ``page``'s one inline stylesheet in: the
    hash of its text as rendered, so it can never fall out of step with the template."""
    styles = re.findall(r"<style>(.*?)</style>", page, flags=re.DOTALL)
    assert len(styles) == 1, "the docs page has one stylesheet"
    return "sha256-" + b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()


WEBHOOKS_SENT = "webhooks sent"
_WEBHOOKS_SENT_TEXT = (
    "The deliveries the service POSTs to your webhook endpoints (the document's `webhooks`),"
    " one per event type, signed per Standard Webhooks. The path shown is the event type."
)


def docs_view(document: dict[str, Any]) -> DocsPage:
    info = document["info"]
    components = document.get("components", {})
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHOD_ORDER
    ]
    tags = []
    for tag in document.get("tags", []):
        tagged = [op for op in operations if tag["name"] in op[2].get("tags", ())]
        if tagged:
            tags.append(
                Tag(
                    tag["name"],
                    _blocks(tag.get("description", "")),
                    tuple(_operation(path, method, op, components) for path, method, op in tagged),
                )
            )
    sent = [
        _operation(event_type, method, op, components)
        for event_type, item in document.get("webhooks", {}).items()
        for method, op in item.items()
    ]
    if sent:  # what the service POSTs to platforms, after what it answers
        tags.append(Tag(WEBHOOKS_SENT, _blocks(_WEBHOOKS_SENT_TEXT), tuple(sent)))
    return DocsPage(
        title=info["title"],
        version=info["version"],
        openapi=document["openapi"],
        overview=_blocks(info.get("description", "")),
        schemes=tuple(
            _scheme(name, scheme) for name, scheme in components.get("securitySchemes", {}).items()
        ),
        tags=tuple(tags),
        schemas=tuple(
            _schema(name, schema) for name, schema in components.get("schemas", {}).items()
        ),
    )


def _anchor(method: str, path: str) -> str:
    return f"op-{method}-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")


def _blocks(text: str) -> Blocks:
    """A description's paragraphs and lists, with `code` spans: the little Markdown they use."""
    blocks = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if all(line.startswith("- ") for line in lines):
            blocks.append(Block("ul", tuple(_inline(line[2:]) for line in lines)))
        else:
            blocks.append(Block("p", (_inline(" ".join(lines)),)))
    return tuple(blocks)


def _inline(text: str) -> Spans:
    return tuple(
        Span(part, "code" if index % 2 else "text") for index, part in enumerate(text.split("`"))
    )


def _joined(parts: Iterable[Sequence[Span]], separator: str) -> Spans:
    joined: list[Span] = []
    for index, part in enumerate(parts):
        if index:
            joined.append(Span(separator))
        joined.extend(part)
    return tuple(joined)


def _scheme(name: str, scheme: dict[str, Any]) -> Scheme:
    if scheme["type"] == "http":
        sent_as: Spans = (Span(f"Authorization: {scheme['scheme'].title()} …", "code"),)
    else:
        sent_as = (Span(scheme["name"], "code"), Span(" header"))
    return Scheme(name, sent_as, _inline(scheme.get("description", "")))


def _operation(
    path: str, method: str, operation: dict[str, Any], components: dict[str, Any]
) -> Operation:
    parameters = [_resolve(p, components) for p in operation.get("parameters", [])]
    return Operation(
        method=method,
        path=path,
        anchor=_anchor(method, path),
        summary=_inline(operation.get("summary", "")),
        description=_blocks(operation.get("description", "")),
        credentials=tuple(
            name for requirement in operation.get("security") or [] for name in requirement
        ),
        parameters=tuple(
            Field(
                p["name"],
                p["in"],
                bool(p.get("required")),
                _type(p.get("schema", {})),
                _rules(p.get("schema", {})),
                _inline(p.get("description") or p.get("schema", {}).get("description", "")),
            )
            for p in parameters
        ),
        body=_media(operation.get("requestBody", {})),
        answers=tuple(
            Answer(str(status), _blocks(response.get("description", "")), _media(response))
            for status, response in operation.get("responses", {}).items()
        ),
    )


def _media(described: dict[str, Any]) -> tuple[Media, ...]:
    return tuple(
        Media(kind, _type(content.get("schema", {})))
        for kind, content in described.get("content", {}).items()
    )


def _resolve(item: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if not isinstance(ref, str):
        return item
    _, _, section, name = ref.split("/", 3)
    resolved: dict[str, Any] = components[section][name]
    return resolved


def _type(schema: dict[str, Any]) -> Spans:
    """A short, linked name of a schema's type."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return (Span(name, "link", f"#schema-{name}"),)
    if "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf") or schema.get("anyOf") or []
        word = "one of" if "oneOf" in schema else "any of"
        return (Span(f"{word} "), *_joined((_type(option) for option in options), ", "))
    if "allOf" in schema:
        base = _joined((_type(part) for part in schema["allOf"]), " and ")
        codes = schema.get("properties", {}).get("code", {}).get("enum")
        if codes:
            return (*base, Span(" with "), Span("code", "code"), Span(" one of "), *_codes(codes))
        return base
    kinds = schema.get("type", "any")
    names: list[Spans] = []
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind == "array":
            names.append((Span("array of "), *_type(schema.get("items", {}))))
        elif kind == "string" and "format" in schema:
            names.append((Span(f"string ({schema['format']})"),))
        else:
            names.append((Span(str(kind)),))
    return _joined(names, " or ")


def _codes(values: Iterable[Any]) -> Spans:
    return _joined(((Span(str(value), "code"),) for value in values), ", ")


def _rules(schema: dict[str, Any]) -> Spans:
    rules: list[Spans] = []
    if "enum" in schema:
        rules.append((Span("one of "), *_codes(schema["enum"])))
    rules.extend((Span(f"{word} {schema[key]}"),) for key, word in _LIMITS if key in schema)
    if "pattern" in schema:
        rules.append((Span("matches "), Span(schema["pattern"], "code")))
    if "default" in schema:
        rules.append((Span("default "), Span(orjson.dumps(schema["default"]).decode(), "code")))
    items = schema.get("items")
    if isinstance(items, dict) and "$ref" not in items:
        inner = _rules(items)
        if inner:
            rules.append((Span("each: "), *inner))
    return _joined(rules, "; ")


def _schema(name: str, schema: dict[str, Any]) -> SchemaView:
    required = set(schema.get("required", []))
    return SchemaView(
        name=name,
        description=_blocks(schema.get("description", "")),
        fields=tuple(
            Field(
                prop,
                "",
                prop in required,
                _type(sub),
                _rules(sub),
                _inline(sub.get("description", "")),
            )
            for prop, sub in schema.get("properties", {}).items()
        ),
        type=_type(schema),
        closed=schema.get("additionalProperties") is False,
    )
