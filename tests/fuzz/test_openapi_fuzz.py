"""Schemathesis against the real service: every endpoint of /openapi.json, with real credentials.

Each generated request (valid ones, and invalid ones for every rule the document states) must
get an answer that the document promises: never a 5xx, a documented status, the documented
content type and headers, and a body that matches the documented schema. Part of the
generated data is steered at real data (the seeded invoices, totals that add up, the right
paid amount) so that requests get past "not found" into the decisions behind it.

``make test`` runs a short, reproducible run (``FUZZ_EXAMPLES`` per endpoint, 30 by default,
with a fixed seed); ``make fuzz`` a long random one (``FUZZ_EXAMPLES=450``, 5,000+ requests).
``FUZZ_SEED`` fixes the seed of a long run, to replay it.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.hooks import HookContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.http.openapi import OPERATIONS
from tests.credentials import basic
from tests.fuzz.conftest import Server, Stats

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
SEED = os.environ.get("FUZZ_SEED")
LONG_RUN = "FUZZ_EXAMPLES" in os.environ
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_AMOUNT = 10**12

# Every documented operation of a development server (the sandbox is not documented).
OPERATION_KEYS = sorted(OPERATIONS)


@pytest.fixture(scope="session")
def api_schema(fuzz_server: Server) -> BaseSchema:
    config = schemathesis.Config.from_dict({**({"seed": int(SEED)} if SEED else {})})
    loaded = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", config=config)
    steer = Steering(fuzz_server)

    def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
        return steer.body(context, body)

    def flatmap_query(context: HookContext, query: Any) -> st.SearchStrategy[Any]:
        return steer.query(context, query)

    loaded.hook(flatmap_body)
    loaded.hook(flatmap_query)
    return loaded


@pytest.fixture(scope="session")
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


@pytest.mark.parametrize(
    ("method", "path"), OPERATION_KEYS, ids=[f"{m.upper()} {p}" for m, p in OPERATION_KEYS]
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    method: str,
    path: str,
    api_schema: BaseSchema,
    fuzz_server: Server,
    fuzz_stats: Stats,
    session: requests.Session,
) -> None:
    """No 5xx; every status, content type, header and body as /openapi.json documents it."""
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not LONG_RUN and SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=cases)
    def exchange(case: Case[Any]) -> None:
        headers = credentials(case, fuzz_server)
        response = case.call(session=session, headers=headers, timeout=30)
        fuzz_stats.statuses[(case.operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as failures:
            for failure in failures.exceptions:
                fuzz_stats.failures[type(failure).__name__] += 1
            if response.status_code >= 500:
                failures.add_note("\n".join(["server errors:", *fuzz_server.errors_logged()[-3:]]))
            raise

    if SEED is not None:
        exchange = seed(int(SEED))(exchange)
    exchange()


def base_requests(server: Server) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """One valid request per operation (several for detail), on the seeded data."""
    paid, pending = server.seeded.tagged("paid"), server.seeded.tagged("pending")
    to_mark = server.seeded.tagged("to-mark")
    qris = server.seeded.tagged("qris")
    line = {
        "amount": 10000,
        "freight_charge": 5000,
        "insurance_amount": 100,
        "commission_onmarket": 1000,
        "seller_username": "seller1",
        "invoice_onmarket": "INV/SWEEP",
        "waybill_number": "WB-1",
    }
    return {
        ("post", "/auth"): [{"body": {"username": "usernew1", "password": "usernew1"}}],
        ("post", "/payment-checkout"): [
            {
                "body": {
                    "total_amount": 15100,
                    "service": "ONDELIVERY",
                    "source": "XENDIT",
                    "transaction": [line],
                }
            }
        ],
        ("get", "/invoice/detail"): [
            {"query": {"invoice": paid["invoice"]}},
            {"query": {"invoice": paid["invoice"], "as_of_position": "3"}},
            {"query": {"waybill_number": "WB-1", "as_of": "2030-01-01T00:00:00+07:00"}},
        ],
        ("get", "/invoice/history"): [{"query": {"invoice": paid["invoice"]}}],
        ("get", "/admin"): [
            {"query": {"q": paid["invoice"]}},
            {"query": {"q": paid["invoice"], "as_of_position": "3"}},
            {"query": {"q": "WB-1", "as_of": "2030-01-01T00:00:00+07:00"}},
        ],
        ("get", "/balance"): [{"query": {"limit": "5"}}],
        ("post", "/invoice/cancel"): [
            {
                "body": {
                    "platform": "ONMARKET",
                    "invoice_id": paid["invoice"],
                    "invoice_onmarket": paid["invoice_onmarket"][1],
                    "buyer_username": "usernew1",
                }
            }
        ],
        ("post", "/invoice/done"): [
            {
                "body": {
                    "platform": "ONMARKET",
                    "invoice_id": paid["invoice"],
                    "invoice_onmarket": paid["invoice_onmarket"][0],
                }
            }
        ],
        ("post", "/invoice/done/batch"): [
            {
                "body": {
                    "platform": "ONMARKET",
                    "items": [
                        {
                            "invoice_id": paid["invoice"],
                            "invoice_onmarket": paid["invoice_onmarket"][0],
                            "amount": 15100,
                        }
                    ],
                }
            }
        ],
        ("post", "/invoice/mark-paid"): [
            {
                "body": {
                    "platform": "ONMARKET",
                    "invoice_id": to_mark["invoice"],
                    "reference": "SWEEP-TRF-1",
                    "reason": "paid by bank transfer",
                }
            }
        ],
        ("post", "/balance/topup"): [{"body": {"username": "seller1", "amount": 5}}],
        ("post", "/callback/xendit/invoice"): [
            {
                "body": {
                    "id": "sweep-invoice",
                    "payment_id": "sweep-payment",
                    "external_id": pending["invoice"],
                    "status": "PAID",
                    "paid_amount": pending["amount"],
                    "amount": pending["amount"],
                    "paid_at": "2030-01-01T00:00:00.000Z",
                    "payment_method": "BANK_TRANSFER",
                    "payment_channel": "BCA",
                }
            }
        ],
        ("post", "/callback/xendit/qr"): [
            {
                "body": {
                    "event": "qr.payment",
                    "data": {
                        "id": "sweep-qr-payment",
                        "qr_id": qris["reference"],
                        "reference_id": qris["invoice"],
                        "amount": qris["amount"],
                        "status": "SUCCEEDED",
                        "created": "2030-01-01T00:00:00.000Z",
                        "channel_code": "ID_DANA",
                    },
                }
            }
        ],
        **_webhook_requests(),
    }


def _webhook_requests() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The webhook operations, on an endpoint id nobody has (404 is documented)."""
    endpoint = {"endpoint": "ep_" + "0" * 24}
    url = "http://127.0.0.1:9/hook"
    return {
        ("post", "/webhooks/endpoints"): [
            {"body": {"url": url, "event_types": ["invoice.paid"], "description": "sweep"}}
        ],
        ("get", "/webhooks/endpoints"): [{"query": {}}],
        ("get", "/webhooks/endpoints/{endpoint}"): [{"query": {}, "path": endpoint}],
        ("patch", "/webhooks/endpoints/{endpoint}"): [
            {"body": {"url": url, "disabled": False, "description": "x"}, "path": endpoint}
        ],
        ("delete", "/webhooks/endpoints/{endpoint}"): [{"query": {}, "path": endpoint}],
        ("post", "/webhooks/endpoints/{endpoint}/rotate-secret"): [{"query": {}, "path": endpoint}],
        ("post", "/webhooks/endpoints/{endpoint}/recover"): [
            {"body": {"since": "2030-01-01T00:00:00Z"}, "path": endpoint}
        ],
        ("get", "/webhooks/messages"): [
            {"query": {"status": "failed", "invoice": "OM0000000000000", "limit": "5"}}
        ],
        ("post", "/webhooks/messages/{message}/resend"): [
            {"query": {}, "path": {"message": "msg_" + "0" * 32}}
        ],
        ("post", "/admin/webhooks/{delivery_id}/resend"): [
            {"query": {}, "path": {"delivery_id": "msg_" + "0" * 32}}
        ],
    }


# Operations without a field to vary.
UNSWEPT = ("/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs")
SWEPT = sorted(key for key in OPERATION_KEYS if key[1] not in UNSWEPT)


@pytest.mark.parametrize(("method", "path"), SWEPT, ids=[f"{m.upper()} {p}" for m, p in SWEPT])
def test_no_field_breaks_the_service_with_a_nasty_value(
    method: str,
    path: str,
    api_schema: BaseSchema,
    fuzz_server: Server,
    fuzz_stats: Stats,
    session: requests.Session,
) -> None:
    """Every field of a valid request, in turn, gets each nasty variant of its value: a
    trailing newline or NUL, a line separator, one character too many, the wrong type, integers
    past 64 bits or the money limit. Every answer must still be a documented one."""
    operation = api_schema[path][method]
    failures = []
    for base in base_requests(fuzz_server)[(method, path)]:
        location = "query" if "query" in base else "body"
        for leaf in _leaves(base[location]):
            for variant in _nasty_variants(_at(base[location], leaf), location == "query"):
                data = _replaced(base[location], leaf, variant)
                case = operation.Case(**{location: data}, path_parameters=base.get("path"))
                headers = credentials(case, fuzz_server)
                response = case.call(session=session, headers=headers, timeout=30)
                fuzz_stats.statuses[(operation.label, response.status_code)] += 1
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        fuzz_stats.failures[type(failure).__name__] += 1
                    failures.append(f"{location} {data!r}: {group}")
    assert not failures, "\n".join([*failures, "server errors:", *fuzz_server.errors_logged()])


def credentials(case: Case[Any], server: Server) -> dict[str, str]:
    """The real credentials of the operation's security scheme."""
    security = case.operation.definition.raw.get("security") or []
    schemes = {name for requirement in security for name in requirement}
    if "bearer" in schemes:
        return {"Authorization": f"Bearer {server.bearer}"}
    if "basic" in schemes:
        admin = case.operation.path.startswith(("/balance/topup", "/admin"))
        return basic("admin" if admin else "onmarket")
    if "callbackToken" in schemes:
        return {"x-callback-token": server.callback_token}
    return {}


class Steering:
    """Aims part of the generated data at real data, so requests reach the decisions.

    Half of the bodies and queries go out as generated; the other half name a seeded invoice
    (and its buyer, store and amount), or in a checkout get amounts that add up."""

    def __init__(self, server: Server) -> None:
        self.invoices = server.seeded.invoices
        self.lines = [(i, number) for i in self.invoices for number in i["invoice_onmarket"]]
        self.numbers = itertools.count()

    def body(self, context: HookContext, body: Any) -> st.SearchStrategy[Any]:
        path = context.operation.path if context.operation is not None else ""
        if not isinstance(body, dict):
            return st.just(body)
        if path == "/payment-checkout":
            aimed: st.SearchStrategy[Any] = st.builds(lambda: self._checkout(body))
        else:
            steer = {
                "/invoice/cancel": self._platform,
                "/invoice/done": self._platform,
                "/invoice/done/batch": self._batch,
                "/invoice/mark-paid": self._mark_paid,
                "/callback/xendit/invoice": self._invoice_callback,
                "/callback/xendit/qr": self._qr_callback,
                "/balance/topup": self._top_up,
            }.get(path)
            if steer is None:
                return st.one_of(st.just(body), _nasty(st.just(body)))
            aimed = st.sampled_from(self.lines).map(lambda line: steer(body, *line))
        return st.one_of(st.just(body), aimed, _nasty(aimed))

    def query(self, context: HookContext, query: Any) -> st.SearchStrategy[Any]:
        path = context.operation.path if context.operation is not None else ""
        if not isinstance(query, dict) or not query:
            return st.just(query)
        if path not in ("/invoice/detail", "/invoice/history"):
            return st.one_of(st.just(query), _nasty(st.just(query), in_query=True))
        moment = {k: query[k] for k in ("as_of", "as_of_position") if k in query}
        if len(moment) == 2:  # one at most
            del moment["as_of_position"]
        aimed = st.sampled_from(self.invoices).map(lambda i: {**moment, "invoice": i["invoice"]})
        return st.one_of(st.just(query), aimed, _nasty(aimed, in_query=True))

    def _checkout(self, body: dict[str, Any]) -> dict[str, Any]:
        lines = body.get("transaction")
        if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
            return body
        fixed, total = [], 0
        for line in lines:
            line = {k: _integral(v) for k, v in line.items()}
            amounts = [line.get(k, 0) for k in ("amount", "freight_charge", "insurance_amount")]
            if not all(type(a) is int for a in amounts):
                return body
            total += sum(amounts)
            if type(line.get("commission_onmarket")) is int:
                line["commission_onmarket"] = min(line["commission_onmarket"], amounts[0])
            if isinstance(line.get("invoice_onmarket"), str):
                line["invoice_onmarket"] = f"{line['invoice_onmarket'][:80]}#{next(self.numbers)}"
            if body.get("service") != "ONDELIVERY":
                line.pop("waybill_number", None)
            fixed.append(line)
        if not 0 < total <= MAX_AMOUNT:
            return body
        return {**body, "transaction": fixed, "total_amount": total}

    @staticmethod
    def _batch(body: dict[str, Any], invoice: dict[str, Any], number: str) -> dict[str, Any]:
        """A batch whose items name a seeded transaction, the generated items' other fields
        kept."""
        items = body.get("items")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return body
        named = {"invoice_id": invoice["invoice"], "invoice_onmarket": number}
        return {**body, "platform": "ONMARKET", "items": [{**item, **named} for item in items]}

    @staticmethod
    def _platform(body: dict[str, Any], invoice: dict[str, Any], number: str) -> dict[str, Any]:
        steered = {**body, "platform": "ONMARKET", "invoice_id": invoice["invoice"]}
        steered["invoice_onmarket"] = number
        if "buyer_username" in body:
            steered["buyer_username"] = "usernew1"
        return steered

    @staticmethod
    def _mark_paid(body: dict[str, Any], invoice: dict[str, Any], _: str) -> dict[str, Any]:
        return {**body, "platform": "ONMARKET", "invoice_id": invoice["invoice"]}

    @staticmethod
    def _invoice_callback(body: dict[str, Any], invoice: dict[str, Any], _: str) -> dict[str, Any]:
        steered = {**body, "external_id": invoice["invoice"]}
        if "paid_amount" in body:
            steered["paid_amount"] = invoice["amount"]
        return steered

    @staticmethod
    def _qr_callback(body: dict[str, Any], invoice: dict[str, Any], _: str) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, dict):
            return body
        data = {**data, "reference_id": invoice["invoice"], "amount": invoice["amount"]}
        return {**body, "data": data}

    @staticmethod
    def _top_up(body: dict[str, Any], invoice: dict[str, Any], _: str) -> dict[str, Any]:
        return {**body, "username": "usernew1"}


# What generators derived from the document rarely make, and what has broken services before:
# a control character at the end (a Python `$` lets "abc\\n" through), other scripts, one past
# a length limit, integers past SQLite's 64 bits or the money limit, floats, wrong types.
def _string_variants(value: str) -> list[Any]:
    return [f"{value}\n", f"{value}\x00", f"\u2028{value}", f"{value}😀", "x" * 101, "", 7]


def _number_variants(value: float) -> list[Any]:
    return [2**63, 2**64 + 1, -1, 10**12 + 1, value + 0.5, 1e308, str(value), True, None]


def _nasty_variants(value: Any, in_query: bool) -> list[Any]:
    if isinstance(value, str):
        variants = _string_variants(value)
        if in_query:
            variants += ["9223372036854775808", "-1", "1e3", "NaN", f" {value}"]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        variants = _number_variants(value)
    else:
        variants = ["x", 0, None, [], {}]
    return [str(v) if in_query else v for v in variants]


def _nasty(strategy: st.SearchStrategy[Any], in_query: bool = False) -> st.SearchStrategy[Any]:
    """``strategy``'s values with one field (at any depth) replaced by a nasty variant of it."""

    def replace_one(value: Any) -> st.SearchStrategy[Any]:
        leaves = list(_leaves(value))
        if not leaves:
            return st.just(value)

        def variants(path: tuple[Any, ...]) -> st.SearchStrategy[Any]:
            variant = st.sampled_from(_nasty_variants(_at(value, path), in_query))
            return variant.map(lambda new: _replaced(value, path, new))

        return st.sampled_from(leaves).flatmap(variants)

    return strategy.flatmap(replace_one)


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _leaves(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, (dict, list)) and item:
            yield from _leaves(item, (*at, key))
        else:
            yield (*at, key)


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copied = copy.deepcopy(value)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copied


def _integral(value: Any) -> Any:
    """101.0 is an integer to JSON Schema, not to this API: send 101."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
