"""The API's OpenAPI document as one readable HTML page, rendered on the server.

No script and no outside URL: one inline stylesheet, allowed by its hash (``CSS_HASH``) in the
page's Content-Security-Policy, so ``/docs`` works under ``default-src 'none'``.
"""

from __future__ import annotations

import hashlib
import html
import re
from base64 import b64encode
from collections.abc import Iterable
from typing import Any

import orjson

_METHOD_ORDER = ("get", "post", "put", "patch", "delete")


def render_page(document: dict[str, Any]) -> str:
    """``document`` as one self-contained HTML page."""
    info = document["info"]
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHOD_ORDER
    ]
    components = document.get("components", {})
    toc, sections = [], []
    for tag in document.get("tags", []):
        tagged = [op for op in operations if tag["name"] in op[2].get("tags", ())]
        if not tagged:
            continue
        links = "".join(
            f'<li><a href="#{_anchor(method, path)}"><span class="m m-{method}">'
            f"{method.upper()}</span> {_e(path)}</a></li>"
            for path, method, _ in tagged
        )
        toc.append(f"<li>{_e(tag['name'])}<ul>{links}</ul></li>")
        body = "".join(_operation_html(path, method, op, components) for path, method, op in tagged)
        sections.append(
            f'<section class="tag" id="tag-{_e(tag["name"])}"><h2>{_e(tag["name"])}</h2>'
            f"{_text(tag.get('description', ''))}{body}</section>"
        )
    schema_sections = "".join(
        _schema_section(name, schema) for name, schema in components.get("schemas", {}).items()
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(info["title"])} {_e(info["version"])}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<header class="top"><h1>{_e(info["title"])} <small>{_e(info["version"])}</small></h1>
<p>OpenAPI {_e(document["openapi"])} · <a href="/openapi.json">openapi.json</a></p></header>
<div class="layout">
<nav class="toc" aria-label="Contents"><ul>
<li><a href="#overview">Overview</a></li>
<li><a href="#authentication">Authentication</a></li>
{"".join(toc)}
<li><a href="#schemas">Schemas</a></li>
</ul></nav>
<main>
<section id="overview"><h2>Overview</h2>{_text(info.get("description", ""))}</section>
<section id="authentication"><h2>Authentication</h2>{_security_html(components)}</section>
{"".join(sections)}
<section id="schemas"><h2>Schemas</h2>{schema_sections}</section>
</main>
</div>
</body>
</html>
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _anchor(method: str, path: str) -> str:
    return f"op-{method}-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")


def _text(text: str) -> str:
    """A description's paragraphs and lists, with `code` spans: the little Markdown they use."""
    blocks = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            blocks.append(f"<ul>{items}</ul>")
        else:
            blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "".join(blocks)


def _inline(text: str) -> str:
    parts = text.split("`")
    return "".join(
        f"<code>{_e(part)}</code>" if index % 2 else _e(part) for index, part in enumerate(parts)
    )


def _security_html(components: dict[str, Any]) -> str:
    rows = []
    for name, scheme in components.get("securitySchemes", {}).items():
        if scheme["type"] == "http":
            how = f"<code>Authorization: {_e(scheme['scheme'].title())} …</code>"
        else:
            how = f"<code>{_e(scheme['name'])}</code> header"
        rows.append(
            f'<tr id="security-{_e(name)}"><th scope="row">{_e(name)}</th><td>{how}</td>'
            f"<td>{_inline(scheme.get('description', ''))}</td></tr>"
        )
    return (
        '<table><thead><tr><th scope="col">scheme</th><th scope="col">sent as</th>'
        f'<th scope="col">what</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _operation_html(
    path: str, method: str, operation: dict[str, Any], components: dict[str, Any]
) -> str:
    security = operation.get("security") or []
    schemes = [name for requirement in security for name in requirement]
    auth = (
        " or ".join(f'<a href="#security-{_e(name)}">{_e(name)}</a>' for name in schemes)
        if schemes
        else "none"
    )
    parts = [
        f'<section class="op" id="{_anchor(method, path)}">',
        f'<h3><span class="m m-{method}">{method.upper()}</span> <code>{_e(path)}</code></h3>',
        f'<p class="summary">{_inline(operation.get("summary", ""))}</p>',
        _text(operation.get("description", "")),
        f'<p class="auth"><strong>Credentials:</strong> {auth}</p>',
    ]
    parameters = [_resolve(p, components) for p in operation.get("parameters", [])]
    if parameters:
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td>{_type_html(p.get('schema', {}))}</td>"
            f"<td>{_rules_html(p.get('schema', {}))}</td>"
            f"<td>{_inline(p.get('description') or p.get('schema', {}).get('description', ''))}"
            "</td></tr>"
            for p in parameters
        )
        parts.append(
            '<h4>Parameters</h4><table class="fields"><thead><tr><th scope="col">name</th>'
            '<th scope="col">in</th><th scope="col">required</th><th scope="col">type</th>'
            '<th scope="col">rules</th><th scope="col">meaning</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    body = operation.get("requestBody")
    if body:
        media = "".join(
            f"<p><code>{_e(kind)}</code>: {_type_html(content.get('schema', {}))}</p>"
            for kind, content in body.get("content", {}).items()
        )
        parts.append(f"<h4>Request body</h4>{media}")
    answers = []
    for status, response in operation.get("responses", {}).items():
        contents = response.get("content", {})
        shape = "".join(
            f"<div><code>{_e(kind)}</code> {_type_html(content.get('schema', {}))}</div>"
            for kind, content in contents.items()
        )
        answers.append(
            f'<tr><th scope="row" class="status s{_e(status)[:1]}">{_e(status)}</th>'
            f"<td>{_text(response.get('description', ''))}</td><td>{shape}</td></tr>"
        )
    parts.append(
        '<h4>Answers</h4><table class="answers"><thead><tr><th scope="col">status</th>'
        '<th scope="col">meaning</th><th scope="col">body</th></tr></thead>'
        f"<tbody>{''.join(answers)}</tbody></table></section>"
    )
    return "".join(parts)


def _resolve(item: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if not isinstance(ref, str):
        return item
    _, _, section, name = ref.split("/", 3)
    resolved: dict[str, Any] = components[section][name]
    return resolved


def _ref_link(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'


def _type_html(schema: dict[str, Any]) -> str:
    """A short, linked name of a schema's type."""
    if "$ref" in schema:
        return _ref_link(schema["$ref"])
    if "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf") or schema.get("anyOf") or []
        word = "one of" if "oneOf" in schema else "any of"
        return f"{word} " + ", ".join(_type_html(option) for option in options)
    if "allOf" in schema:
        base = " and ".join(_type_html(part) for part in schema["allOf"])
        codes = schema.get("properties", {}).get("code", {}).get("enum")
        if codes:
            return f"{base} with <code>code</code> one of {_codes(codes)}"
        return base
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    names = []
    for kind in kinds:
        if kind == "array":
            names.append(f"array of {_type_html(schema.get('items', {}))}")
        elif kind == "string" and "format" in schema:
            names.append(f"string ({_e(schema['format'])})")
        else:
            names.append(_e(kind))
    return " or ".join(names)


def _codes(values: Iterable[Any]) -> str:
    return ", ".join(f"<code>{_e(value)}</code>" for value in values)


def _rules_html(schema: dict[str, Any]) -> str:
    rules = []
    if "enum" in schema:
        rules.append(f"one of {_codes(schema['enum'])}")
    for key, word in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in schema:
            rules.append(f"{word} {_e(schema[key])}")
    if "pattern" in schema:
        rules.append(f"matches <code>{_e(schema['pattern'])}</code>")
    if "default" in schema:
        rules.append(f"default <code>{_e(orjson.dumps(schema['default']).decode())}</code>")
    items = schema.get("items")
    if isinstance(items, dict) and "$ref" not in items:
        inner = _rules_html(items)
        if inner:
            rules.append(f"each: {inner}")
    return "; ".join(rules)


def _schema_section(name: str, schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{_e(prop)}</code></td><td>{'yes' if prop in required else 'no'}</td>"
        f"<td>{_type_html(sub)}</td><td>{_rules_html(sub)}</td>"
        f"<td>{_inline(sub.get('description', ''))}</td></tr>"
        for prop, sub in schema.get("properties", {}).items()
    )
    closed = (
        '<p class="note">No other fields are accepted.</p>'
        if schema.get("additionalProperties") is False
        else ""
    )
    table = (
        '<table class="fields"><thead><tr><th scope="col">field</th><th scope="col">required</th>'
        '<th scope="col">type</th><th scope="col">rules</th><th scope="col">meaning</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        if rows
        else f"<p>{_type_html(schema)}</p>"
    )
    return (
        f'<section class="schema" id="schema-{_e(name)}"><h3>{_e(name)}</h3>'
        f"{_text(schema.get('description', ''))}{table}{closed}</section>"
    )


CSS = """
:root{--ink:#1c2430;--muted:#5d6877;--line:#e3e7ed;--bg:#f6f7f9;--accent:#0b6bcb;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:var(--ink)}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);line-height:1.5}
a{color:var(--accent)}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.88em;
background:#eef1f5;padding:.05rem .3rem;border-radius:4px;overflow-wrap:anywhere}
.top{background:#17212f;color:#fff;padding:1rem 1.5rem}
.top h1{margin:0;font-size:1.4rem}.top small{color:#c7d0dc;font-weight:400}
.top p{margin:.3rem 0 0;color:#c7d0dc}.top a{color:#9cc7f5}
.layout{display:grid;grid-template-columns:17rem 1fr;gap:1.5rem;max-width:90rem;margin:0 auto;
padding:1.5rem}
.toc{position:sticky;top:1rem;align-self:start;max-height:calc(100vh - 2rem);overflow:auto;
font-size:.9rem}
.toc ul{list-style:none;padding-left:.8rem;margin:.2rem 0}.toc>ul{padding-left:0}
.toc a{text-decoration:none}
main{min-width:0}
section.tag,#overview,#authentication,#schemas{background:#fff;border:1px solid var(--line);
border-radius:10px;padding:1rem 1.5rem;margin-bottom:1.5rem}
h2{margin-top:.2rem;text-transform:capitalize}
.op,.schema{border-top:1px solid var(--line);padding-top:.8rem;margin-top:1.2rem}
.op h3,.schema h3{margin:.2rem 0;font-size:1.1rem}
.summary{font-weight:600;margin:.3rem 0}
.m{display:inline-block;min-width:3.5rem;text-align:center;border-radius:5px;padding:.05rem .4rem;
font-size:.8rem;font-weight:700;color:#fff;background:#5d6877}
.m-get{background:#1a7f37}.m-post{background:#0b6bcb}.m-delete{background:#b42318}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;font-size:.9rem}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;vertical-align:top}
thead th{color:var(--muted);font-size:.8rem}
td p{margin:0 0 .3rem}td ul{margin:.2rem 0;padding-left:1.1rem}
.status{font-family:ui-monospace,monospace}.s2{color:#1a7f37}.s4{color:#9a6700}
.s5{color:#b42318}
.fields td:first-child code{overflow-wrap:normal;white-space:nowrap}
.note{color:var(--muted);font-size:.85rem}
@media (max-width:50rem){.layout{grid-template-columns:1fr}.toc{position:static;max-height:none}}
"""

CSS_HASH = "sha256-" + b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
