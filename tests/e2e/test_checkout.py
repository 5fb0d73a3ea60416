"""POST /payment-checkout end to end: answers per source, validation, money, races, idempotency.

Every refused request is followed by a check that nothing changed: no event was appended, no
invoice exists, every account balance is what it was and the ledger still sums to zero.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import io
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDictProxy

from service.application import Context, DisableUser
from service.gateway.qris import parse_emv
from service.http.keys import SERVICE, STORE
from service.security import TokenClaims, issue_token
from tests.e2e.conftest import Api, FakeClock, checkout_body
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

Json = dict[str, Any]

PREFIXES = {"ONMARKET": "OM", "ONDELIVERY": "OD", "ONTICKET": "OT"}
INVOICE_TTL = timedelta(hours=2)
MAX_AMOUNT = 10**12
VALIDATION = ("Invalid JSON Format", "VALIDATION")
INSUFFICIENT = {"message": "Insufficient balance", "code": "INSUFFICIENT_BALANCE"}
AUTH_ERROR = {"message": "Auth Error", "code": "AUTH_ERROR"}
API_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
GATEWAY_INVOICE = re.compile(r"^[0-9a-f]{24}$")

# The body request example of seed 001, character for character: the trailing comma after
# "testing12345" makes it invalid JSON.
SEED_EXAMPLE_TEXT = """{
  "total_amount": 40000,
  "service": "ONMARKET",
  "source": "XENDIT",
  "transaction": [
    {
      "amount": 10000,
      "freight_charge": 5000,
      "insurance_amount": 100,
      "commission_onmarket": 1000,
      "seller_username": "testing123",
      "invoice_onmarket": "INV/ONM/20240124-002B0001"
    },
    {
      "amount": 20000,
      "freight_charge": 5000,
      "insurance_amount": 100,
      "commission_onmarket": 1000,
      "seller_username": "testing12345",
    }
  ]
}"""


# -- helpers --------------------------------------------------------------------------------------


class _Missing(enum.Enum):
    FIELD = "missing"


MISSING = _Missing.FIELD


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused checkout must leave alone."""

    head: int
    invoices: int
    balances: tuple[tuple[str, int], ...]


def seed_example(total_amount: int = 40200) -> Json:
    """Seed 001's example, as valid JSON with both stores' invoice numbers (total 40200)."""
    line = {"freight_charge": 5000, "insurance_amount": 100, "commission_onmarket": 1000}
    return {
        "total_amount": total_amount,
        "service": "ONMARKET",
        "source": "XENDIT",
        "transaction": [
            {
                "amount": 10000,
                **line,
                "seller_username": "testing123",
                "invoice_onmarket": "INV/ONM/20240124-002B0001",
            },
            {
                "amount": 20000,
                **line,
                "seller_username": "testing12345",
                "invoice_onmarket": "INV/ONM/20240124-002B0002",
            },
        ],
    }


def fresh_numbers(count: int) -> list[str]:
    return [f"INV/ONM/E2E-{uuid.uuid4().hex[:12]}" for _ in range(count)]


def total_of(body: Json) -> int:
    return sum(
        t["amount"] + t["freight_charge"] + t.get("insurance_amount", 0)
        for t in body["transaction"]
    )


def with_value(body: Json, path: str, value: object) -> Json:
    """A copy of ``body`` with the dotted ``path`` set to ``value`` (or removed for MISSING)."""
    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is MISSING:
        del node[key]
    else:
        node[key] = value
    return changed


def leaf_paths(errors: object, prefix: str = "") -> set[str]:
    """The dotted paths of a marshmallow-style ``errors`` object: {"a": {"0": {"b": [..]}}}."""
    if not isinstance(errors, dict):
        return {prefix}
    paths: set[str] = set()
    for key, value in errors.items():
        paths |= leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    return paths


def expected_time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tlv(payload: str) -> dict[str, str]:
    """A plain tag-length-value split, for the templates inside a QRIS payload."""
    fields: dict[str, str] = {}
    while payload:
        tag, length = payload[:2], int(payload[2:4])
        fields[tag] = payload[4 : 4 + length]
        payload = payload[4 + length :]
    return fields


def key_header(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def foreign_token(clock: FakeClock) -> str:
    """A well-formed buyer token signed with a secret that is not the service's."""
    claims = TokenClaims("usernew1", "buyer", None, clock() + timedelta(hours=1))
    return issue_token(claims, b"another-secret-entirely")


async def post(
    api: Api,
    body: object = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
    buyer: str | None = "usernew1",
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST /payment-checkout with ``body`` as JSON (or ``raw`` bytes), as ``buyer``."""
    payload = raw if raw is not None else json.dumps(body).encode()
    # aiohttp warns about sending large raw bytes; a stream of the same bytes is equivalent.
    data = io.BytesIO(payload) if len(payload) > 64 * 1024 else payload
    sent = {"Content-Type": content_type, **(api.bearer(buyer) if buyer else {}), **(headers or {})}
    response = await api.client.post("/payment-checkout", data=data, headers=sent)
    text = await response.text()
    try:
        answer: Any = json.loads(text)
    except json.JSONDecodeError:
        answer = text  # kept, so a failing assertion shows what came back
    return Answer(response.status, answer, response.headers)


async def snapshot(api: Api) -> Snapshot:
    store = api.client.app[STORE]
    balances = await views_query(
        store, "SELECT account, balance FROM account_balances ORDER BY account"
    )
    return Snapshot(
        await store.head_position(),
        await invoice_count(api),
        tuple((str(account), int(balance)) for account, balance in balances),
    )


async def assert_unchanged(api: Api, before: Snapshot) -> None:
    assert await snapshot(api) == before
    assert await api.ledger_sum() == 0


async def invoice_count(api: Api) -> int:
    rows = await views_query(api.client.app[STORE], "SELECT COUNT(*) FROM invoice_view")
    return int(rows[0][0])


async def account_balance(api: Api, account: str) -> int:
    rows = await views_query(
        api.client.app[STORE], "SELECT balance FROM account_balances WHERE account = ?", (account,)
    )
    return int(rows[0][0]) if rows else 0


async def running_balances(api: Api, account: str) -> list[int]:
    """The account's balance after each of its ledger lines, in log order."""
    rows = await views_query(
        api.client.app[STORE],
        "SELECT amount FROM ledger_entries WHERE account = ? ORDER BY position, line",
        (account,),
    )
    running, total = [], 0
    for (amount,) in rows:
        total += int(amount)
        running.append(total)
    return running


async def one_key_burst(api: Api, key: str, count: int = 10) -> tuple[Json, list[Answer]]:
    """``count`` identical BALANCE checkouts sent at once with one Idempotency-Key."""
    body = checkout_body(source="BALANCE")
    await api.top_up("usernew1", count * total_of(body))
    answers = await asyncio.gather(
        *(post(api, body, headers=key_header(key)) for _ in range(count))
    )
    return body, list(answers)


def assert_validation_error(answer: Answer, *paths: str) -> None:
    assert answer.status == 400, answer.body
    assert (answer.body["message"], answer.body["code"]) == VALIDATION
    assert leaf_paths(answer.body["errors"]) == set(paths), answer.body


# -- 1. XENDIT -------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["ONMARKET", "ONDELIVERY", "ONTICKET"])
async def test_xendit_checkout_answers_the_seeds_fields(
    api: Api, clock: FakeClock, service: str
) -> None:
    """A XENDIT checkout answers the seed's keys: payment URL, prefixed id, expiry, PENDING."""
    clock.advance(1.2345)  # milliseconds in the expiry, floored
    body = checkout_body(service=service)

    answer = await post(api, body)

    assert answer.status == 200, answer.body
    created = answer.body
    assert set(created) == {"payment_url", "invoice", "xendit_invoice", "expired_at", "transaction"}
    assert re.fullmatch(PREFIXES[service] + r"[0-9A-Za-z]{13}", created["invoice"])
    assert GATEWAY_INVOICE.fullmatch(created["xendit_invoice"])
    base = api.config.public_base_url.rstrip("/")
    assert created["payment_url"] == f"{base}/sandbox/checkout/{created['xendit_invoice']}"
    assert created["expired_at"] == "2026-03-01T10:00:01.234Z"
    assert created["expired_at"] == expected_time(clock() + INVOICE_TTL)
    assert created["transaction"] == [
        {"invoice_onmarket": t["invoice_onmarket"], "status": "PENDING"}
        for t in body["transaction"]
    ]
    detail = await api.detail(created["invoice"])
    assert (detail["status"], detail["src"], detail["amount"]) == (
        "PENDING",
        "XENDIT",
        total_of(body),
    )
    assert detail["type"] == f"{service} CHECKOUT"
    page = await api.client.get(f"/sandbox/checkout/{created['xendit_invoice']}")
    assert page.status == 200
    assert created["invoice"] in await page.text()
    assert await api.ledger_sum() == 0


async def test_invoice_ids_are_unique(api: Api) -> None:
    """Twenty checkouts get twenty different invoice ids and gateway references."""
    answers = [await api.checkout() for _ in range(20)]
    assert len({a["invoice"] for a in answers}) == 20
    assert len({a["xendit_invoice"] for a in answers}) == 20
    assert await invoice_count(api) == 20


async def test_seed_example_corrected_is_accepted(api: Api) -> None:
    """The seed's example, as valid JSON and with its total corrected to 40200, is accepted."""
    answer = await post(api, seed_example())
    assert answer.status == 200, answer.body
    assert [t["invoice_onmarket"] for t in answer.body["transaction"]] == [
        "INV/ONM/20240124-002B0001",
        "INV/ONM/20240124-002B0002",
    ]
    assert (await api.detail(answer.body["invoice"]))["amount"] == 40200


SELLER_NOT_FOUND = {
    "message": "Invalid JSON Format",
    "code": "SELLER_NOT_FOUND",
    "errors": {
        "transaction": {"1": {"seller_username": ["No enabled buyer account of this name."]}}
    },
}


@pytest.mark.parametrize("source", ["XENDIT", "BALANCE"])
@pytest.mark.parametrize(
    "seller",
    [
        pytest.param("nobody-sells-here", id="unknown"),
        pytest.param("onmarket", id="platform-account"),
        pytest.param("admin", id="admin-account"),
        pytest.param("testing12345", id="disabled"),
    ],
)
async def test_a_seller_who_is_not_an_enabled_buyer_account_is_refused_naming_the_line(
    api: Api, seller: str, source: str
) -> None:
    """Payouts to nobody: the line's seller must be an existing, enabled buyer account, else
    400 SELLER_NOT_FOUND naming the line, and nothing is written or paid."""
    await api.top_up("usernew1", 100_000)
    await api.client.app[SERVICE].handle(DisableUser("testing12345"), Context("cli:test"))
    body = seed_example()
    body["source"] = source
    body["transaction"][1]["seller_username"] = seller
    before = await snapshot(api)

    answer = await post(api, body)

    assert (answer.status, answer.body) == (400, SELLER_NOT_FOUND)
    await assert_unchanged(api, before)


async def test_total_of_exactly_the_cap_is_accepted(api: Api) -> None:
    """A total of exactly 10^12 is the largest accepted amount."""
    line = {"amount": MAX_AMOUNT - 5100, "freight_charge": 5000, "insurance_amount": 100}
    body = checkout_body(stores=1)
    body["transaction"][0].update(line)
    body["total_amount"] = MAX_AMOUNT
    answer = await post(api, body)
    assert answer.status == 200, answer.body
    assert (await api.detail(answer.body["invoice"]))["amount"] == MAX_AMOUNT


# -- 2. QRIS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["ONMARKET", "ONDELIVERY", "ONTICKET"])
async def test_qris_checkout_answers_a_valid_qris_payload(
    api: Api, clock: FakeClock, service: str
) -> None:
    """A QRIS checkout answers a qr_<uuid> reference and an EMVCo payload for the amount."""
    body = checkout_body(service=service, source="QRIS")

    answer = await post(api, body)

    assert answer.status == 200, answer.body
    created = answer.body
    assert set(created) == {"invoice", "xendit_invoice", "qr_string", "amount", "expired_at"}
    assert re.fullmatch(PREFIXES[service] + r"[0-9A-Za-z]{13}", created["invoice"])
    reference = created["xendit_invoice"]
    assert reference.startswith("qr_")
    assert str(uuid.UUID(reference[3:])) == reference[3:]
    assert created["amount"] == total_of(body) == 40200
    assert created["expired_at"] == expected_time(clock() + INVOICE_TTL)
    assert API_TIME.fullmatch(created["expired_at"])

    fields = parse_emv(created["qr_string"])  # raises on a malformed payload or a bad CRC
    assert fields["00"] == "01"
    assert fields["01"] == "12"
    assert fields["53"] == "360"
    assert fields["54"] == str(created["amount"])
    assert fields["58"] == "ID"
    assert fields["59"] == api.config.merchant_name
    assert fields["60"] == api.config.merchant_city
    assert tlv(fields["26"])["00"] == "ID.CO.QRIS.WWW"
    assert created["invoice"] in tlv(fields["62"]).values()
    detail = await api.detail(created["invoice"])
    assert (detail["status"], detail["src"], detail["qr_string"]) == (
        "PENDING",
        "QRIS",
        created["qr_string"],
    )


# -- 3. BALANCE ------------------------------------------------------------------------------------


async def test_balance_checkout_pays_at_once_into_escrow(api: Api) -> None:
    """With enough balance the invoice is PAID at once and the total moves to escrow."""
    body = checkout_body(source="BALANCE")
    total = total_of(body)
    await api.top_up("usernew1", total + 500)

    answer = await post(api, body)

    assert answer.status == 200, answer.body
    created = answer.body
    assert set(created) == {
        "invoice",
        "xendit_invoice",
        "expired_at",
        "transaction",
        "amount",
        "status",
    }
    assert (created["status"], created["amount"]) == ("PAID", total)
    assert [t["status"] for t in created["transaction"]] == ["PAID", "PAID"]
    detail = await api.detail(created["invoice"])
    assert (detail["status"], detail["src"]) == ("PAID", "BALANCE")
    assert [t["status"] for t in detail["transaction"]] == ["PAID", "PAID"]
    assert (await api.balance("usernew1"))["balance"] == 500
    assert await account_balance(api, f"escrow:{created['invoice']}") == total
    assert await api.ledger_sum() == 0


@pytest.mark.parametrize("empty", [False, True], ids=["one_short", "empty"])
async def test_balance_checkout_without_enough_balance_is_refused(api: Api, empty: bool) -> None:
    """Not enough balance: 400 Insufficient balance, and no invoice, debit or reservation."""
    body = checkout_body(source="BALANCE")
    total = total_of(body)
    have = 0 if empty else total - 1
    if have:
        await api.top_up("usernew1", have)
    before = await snapshot(api)

    answer = await post(api, body)

    assert (answer.status, answer.body) == (400, INSUFFICIENT)
    await assert_unchanged(api, before)
    assert (await api.balance("usernew1"))["balance"] == have
    # The refused checkout reserved nothing: the same store invoices go through once paid for.
    await api.top_up("usernew1", total - have)
    assert (await post(api, body)).status == 200
    assert (await api.balance("usernew1"))["balance"] == 0


# -- 4. the balance race ---------------------------------------------------------------------------


async def test_concurrent_balance_checkouts_never_overdraw(api: Api) -> None:
    """50 concurrent BALANCE checkouts against 7 totals: exactly 7 succeed, balance ends at 0."""
    total = total_of(checkout_body())
    for _ in range(5):
        await api.top_up("usernew1", 7 * total)
        bodies = [checkout_body(source="BALANCE") for _ in range(50)]

        answers = await asyncio.gather(*(post(api, body) for body in bodies))

        statuses = sorted(a.status for a in answers)
        assert statuses == [200] * 7 + [400] * 43, statuses
        assert all(a.body == INSUFFICIENT for a in answers if a.status == 400)
        paid = [a.body["invoice"] for a in answers if a.status == 200]
        assert len(set(paid)) == 7
        assert (await api.balance("usernew1"))["balance"] == 0
        assert min(await running_balances(api, "buyer:usernew1")) >= 0
        for invoice in paid:
            assert await account_balance(api, f"escrow:{invoice}") == total
        assert await api.ledger_sum() == 0
    assert await invoice_count(api) == 35


# -- 5. validation ---------------------------------------------------------------------------------

LINE_AMOUNTS = [
    "transaction.0.amount",
    "transaction.0.freight_charge",
    "transaction.0.insurance_amount",
    "transaction.0.commission_onmarket",
]
BAD_AMOUNTS: list[tuple[str, object]] = [
    ("float", 1000.0),
    ("fraction", 1000.5),
    ("true", True),
    ("false", False),
    ("string", "1000"),
    ("negative", -1),
    ("above_cap", MAX_AMOUNT + 1),
    ("far_above_cap", 10**18),
    ("above_64_bits", 10**30),
    ("null", None),
]
REQUIRED = [
    "total_amount",
    "service",
    "source",
    "transaction",
    "transaction.0.amount",
    "transaction.0.freight_charge",
    "transaction.0.commission_onmarket",
    "transaction.0.seller_username",
    "transaction.0.invoice_onmarket",
]


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "value", [value for _, value in BAD_AMOUNTS], ids=[name for name, _ in BAD_AMOUNTS]
)
async def test_total_amount_must_be_an_integer_from_0_to_the_cap(api: Api, value: object) -> None:
    """A float, boolean, string, negative, null or above-10^12 total_amount is refused."""
    before = await snapshot(api)
    answer = await post(api, with_value(checkout_body(), "total_amount", value))
    assert_validation_error(answer, "total_amount")
    await assert_unchanged(api, before)


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("path", LINE_AMOUNTS)
async def test_transaction_amounts_must_be_integers_from_0_to_the_cap(api: Api, path: str) -> None:
    """Each line amount refuses floats, booleans, strings, negatives and amounts above 10^12."""
    before = await snapshot(api)
    for name, value in BAD_AMOUNTS:
        if value is None and path.endswith("insurance_amount"):
            continue  # optional: null is covered by the required amounts
        answer = await post(api, with_value(checkout_body(), path, value))
        assert answer.status == 400, (name, answer.body)
        assert_validation_error(answer, path)
        await assert_unchanged(api, before)


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("path", [pytest.param(path, id=path) for path in REQUIRED])
async def test_required_fields_must_be_present(api: Api, path: str) -> None:
    """Leaving out a required field is refused, naming that field."""
    before = await snapshot(api)
    answer = await post(api, with_value(checkout_body(), path, MISSING))
    assert_validation_error(answer, path)
    await assert_unchanged(api, before)


def _total(delta: int) -> Json:
    body = checkout_body()
    body["total_amount"] += delta
    return body


def _commission_above_amount() -> Json:
    body = checkout_body()
    body["transaction"][1]["commission_onmarket"] = body["transaction"][1]["amount"] + 1
    return body


def _duplicate_store_invoice() -> Json:
    number = fresh_numbers(1)[0]
    return checkout_body(invoice_onmarket=[number, number])


def _total_zero_with_lines() -> Json:
    return with_value(checkout_body(), "total_amount", 0)


def _everything_zero() -> Json:
    body = checkout_body(stores=1)
    body["transaction"][0].update(
        amount=0, freight_charge=0, insurance_amount=0, commission_onmarket=0
    )
    body["total_amount"] = 0
    return body


def bad_body(name: str, body: Json, path: str) -> Any:
    """A case for the test below: ``path`` is where ``errors`` must name the problem."""
    return pytest.param(body, path, id=name)


BAD_BODIES = [
    bad_body("total_one_more", _total(+1), "total_amount"),
    bad_body("total_one_less", _total(-1), "total_amount"),
    bad_body("total_zero", _total_zero_with_lines(), "total_amount"),
    bad_body("everything_zero", _everything_zero(), "total_amount"),
    bad_body(
        "commission_above_amount",
        _commission_above_amount(),
        "transaction.1.commission_onmarket",
    ),
    bad_body("unknown_service", with_value(checkout_body(), "service", "ONFOOD"), "service"),
    bad_body("lowercase_service", with_value(checkout_body(), "service", "onmarket"), "service"),
    bad_body("unknown_source", with_value(checkout_body(), "source", "CASH"), "source"),
    bad_body("lowercase_source", with_value(checkout_body(), "source", "xendit"), "source"),
    bad_body("no_transactions", with_value(checkout_body(), "transaction", []), "transaction"),
    bad_body(
        "transaction_not_a_list", with_value(checkout_body(), "transaction", {}), "transaction"
    ),
    bad_body("101_transactions", checkout_body(stores=101), "transaction"),
    bad_body("unknown_top_level_field", with_value(checkout_body(), "coupon", "FREE"), "coupon"),
    bad_body(
        "unknown_transaction_field",
        with_value(checkout_body(), "transaction.0.discount", 10),
        "transaction.0.discount",
    ),
    bad_body(
        "seller_username_too_long",
        with_value(checkout_body(), "transaction.0.seller_username", "s" * 101),
        "transaction.0.seller_username",
    ),
    bad_body(
        "transaction_not_an_object",
        with_value(checkout_body(), "transaction.0", "INV/ONM/1"),
        "transaction.0._schema",
    ),
    bad_body(
        "duplicate_invoice_onmarket", _duplicate_store_invoice(), "transaction.1.invoice_onmarket"
    ),
    bad_body(
        "insurance_left_out_but_counted",
        with_value(checkout_body(stores=1), "transaction.0.insurance_amount", MISSING),
        "total_amount",
    ),
]


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(("body", "path"), BAD_BODIES)
async def test_invalid_bodies_are_refused_naming_the_field(api: Api, body: Json, path: str) -> None:
    """Each invalid checkout answers 400 Invalid JSON Format naming the bad field."""
    before = await snapshot(api)
    answer = await post(api, body)
    assert_validation_error(answer, path)
    await assert_unchanged(api, before)


async def test_seed_example_total_is_refused_with_the_right_sum(api: Api) -> None:
    """The seed's total (40000, 200 short) is refused with a message giving the sum, 40200."""
    answer = await post(api, seed_example(total_amount=40000))
    assert_validation_error(answer, "total_amount")
    assert "40200" in answer.body["errors"]["total_amount"][0]


async def test_100_transactions_are_accepted(api: Api) -> None:
    """100 transactions is the most a checkout may carry."""
    body = checkout_body(stores=100)
    answer = await post(api, body)
    assert answer.status == 200, answer.body
    assert len(answer.body["transaction"]) == 100


async def test_commission_equal_to_amount_is_accepted(api: Api) -> None:
    """commission_onmarket may be the whole amount, not more."""
    body = checkout_body(stores=1)
    body["transaction"][0]["commission_onmarket"] = body["transaction"][0]["amount"]
    assert (await post(api, body)).status == 200


async def test_insurance_amount_defaults_to_zero(api: Api) -> None:
    """Without insurance_amount the line's insurance is 0 and the total must leave it out."""
    body = with_value(checkout_body(stores=1), "transaction.0.insurance_amount", MISSING)
    body["total_amount"] = total_of(body)
    assert body["total_amount"] == 15000

    answer = await post(api, body)

    assert answer.status == 200, answer.body
    detail = await api.detail(answer.body["invoice"])
    assert detail["amount"] == 15000
    assert detail["transaction"][0]["insurance_amount"] == 0


# -- 6. and 7. bodies that are not a JSON object ---------------------------------------------------


async def test_seed_example_as_written_is_malformed_json(api: Api) -> None:
    """The seed's example verbatim (trailing comma) is refused as malformed JSON."""
    with pytest.raises(json.JSONDecodeError):
        json.loads(SEED_EXAMPLE_TEXT)
    before = await snapshot(api)

    answer = await post(api, raw=SEED_EXAMPLE_TEXT.encode())

    assert answer.status == 400, answer.body
    assert (answer.body["message"], answer.body["code"]) == (
        "Invalid JSON Format",
        "MALFORMED_JSON",
    )
    await assert_unchanged(api, before)


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param(b'{"total_amount": ', "MALFORMED_JSON", id="truncated"),
        pytest.param(b"", "MALFORMED_JSON", id="empty"),
        pytest.param(b"{'total_amount': 1}", "MALFORMED_JSON", id="single_quotes"),
        pytest.param(b'{"total_amount": NaN}', "MALFORMED_JSON", id="nan"),
        pytest.param(b'{"seller_username": "\xff\xfe"}', "MALFORMED_JSON", id="invalid_utf8"),
        pytest.param(b"[]", "VALIDATION", id="array"),
        pytest.param(json.dumps([checkout_body()]).encode(), "VALIDATION", id="array_of_body"),
        pytest.param(b'"checkout"', "VALIDATION", id="string"),
        pytest.param(b"null", "VALIDATION", id="null"),
        pytest.param(b"40200", "VALIDATION", id="number"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_refused(
    api: Api, raw: bytes, code: str
) -> None:
    """Malformed JSON, invalid UTF-8, and JSON that is not an object: 400, never 500."""
    before = await snapshot(api)
    answer = await post(api, raw=raw)
    assert answer.status == 400, answer.body
    assert (answer.body["message"], answer.body["code"]) == ("Invalid JSON Format", code)
    await assert_unchanged(api, before)


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]
)
async def test_wrong_content_type_is_415(api: Api, content_type: str) -> None:
    """A body that is not sent as application/json answers 415 UNSUPPORTED_MEDIA_TYPE."""
    before = await snapshot(api)
    answer = await post(api, checkout_body(), content_type=content_type)
    assert answer.status == 415, answer.body
    assert answer.body == {
        "message": "Content-Type must be application/json",
        "code": "UNSUPPORTED_MEDIA_TYPE",
    }
    await assert_unchanged(api, before)


async def test_json_with_a_charset_is_accepted(api: Api) -> None:
    """application/json; charset=utf-8 is still JSON."""
    answer = await post(api, checkout_body(), content_type="application/json; charset=utf-8")
    assert answer.status == 200, answer.body


async def test_body_over_the_limit_is_413(api: Api) -> None:
    """A body over max_body_bytes (1 MiB by default; 1.5 MiB sent) answers 413."""
    assert api.config.max_body_bytes == 1024 * 1024
    body = checkout_body()
    body["transaction"][0]["seller_username"] = "x" * (1536 * 1024)
    raw = json.dumps(body).encode()
    assert len(raw) > 1.5 * 1024 * 1024
    before = await snapshot(api)

    answer = await post(api, raw=raw)

    assert answer.status == 413, answer.body
    assert answer.body == {"message": "Request body is too large", "code": "PAYLOAD_TOO_LARGE"}
    await assert_unchanged(api, before)


# -- 8. and 9. marketplace invoice numbers ---------------------------------------------------------


async def test_store_invoice_of_a_pending_invoice_is_in_use(api: Api) -> None:
    """A store invoice number held by a PENDING invoice is refused with INVOICE_ONMARKET_IN_USE."""
    first = await api.checkout()
    held = first["transaction"][1]["invoice_onmarket"]
    before = await snapshot(api)

    answer = await post(api, checkout_body(invoice_onmarket=[*fresh_numbers(1), held]))

    assert answer.status == 400, answer.body
    assert (answer.body["message"], answer.body["code"]) == (
        "Invalid JSON Format",
        "INVOICE_ONMARKET_IN_USE",
    )
    assert leaf_paths(answer.body["errors"]) == {"transaction.1.invoice_onmarket"}
    await assert_unchanged(api, before)


async def test_store_invoice_of_a_paid_invoice_is_in_use(api: Api) -> None:
    """A store invoice number held by a PAID invoice is refused too."""
    first = await api.checkout()
    await api.pay(first["xendit_invoice"])
    assert (await api.detail(first["invoice"]))["status"] == "PAID"
    held = first["transaction"][0]["invoice_onmarket"]
    before = await snapshot(api)

    answer = await post(api, checkout_body(invoice_onmarket=[held]))

    assert answer.status == 400, answer.body
    assert answer.body["code"] == "INVOICE_ONMARKET_IN_USE"
    assert leaf_paths(answer.body["errors"]) == {"transaction.0.invoice_onmarket"}
    await assert_unchanged(api, before)


async def test_store_invoice_is_free_again_once_canceled(api: Api) -> None:
    """Once its invoice is CANCELED, a store invoice number may be checked out again."""
    first = await api.checkout()
    numbers = [t["invoice_onmarket"] for t in first["transaction"]]
    canceled = await api.platform("cancel", invoice_id=first["invoice"])
    assert canceled == {"message": "INVOICE CANCELED"}

    second = await api.checkout(invoice_onmarket=numbers)

    assert second["invoice"] != first["invoice"]
    assert (await api.detail(first["invoice"]))["status"] == "CANCELED"
    assert (await api.detail(second["invoice"]))["status"] == "PENDING"


async def test_store_invoice_is_free_again_once_expired(api: Api, clock: FakeClock) -> None:
    """Once its invoice has EXPIRED, a store invoice number may be checked out again."""
    first = await api.checkout()
    numbers = [t["invoice_onmarket"] for t in first["transaction"]]
    clock.advance(7201)

    second = await api.checkout(invoice_onmarket=numbers)

    assert second["invoice"] != first["invoice"]
    assert (await api.detail(first["invoice"]))["status"] == "EXPIRED"
    assert (await api.detail(second["invoice"]))["status"] == "PENDING"


@pytest.mark.parametrize("source", ["XENDIT", "BALANCE"])
async def test_concurrent_checkouts_of_one_store_invoice_let_one_through(
    api: Api, source: str
) -> None:
    """Ten checkouts racing for one store invoice number: exactly one invoice is created."""
    shared = fresh_numbers(1)[0]
    bodies = [
        checkout_body(source=source, invoice_onmarket=[shared, *fresh_numbers(1)])
        for _ in range(10)
    ]
    total = total_of(bodies[0])
    await api.top_up("usernew1", 10 * total)

    answers = await asyncio.gather(*(post(api, body) for body in bodies))

    assert sorted(a.status for a in answers) == [200] + [400] * 9, [a.body for a in answers]
    for answer in answers:
        if answer.status == 400:
            assert (answer.body["message"], answer.body["code"]) == (
                "Invalid JSON Format",
                "INVOICE_ONMARKET_IN_USE",
            )
            assert any(p.endswith("invoice_onmarket") for p in leaf_paths(answer.body["errors"]))
    assert await invoice_count(api) == 1
    expected_balance = 9 * total if source == "BALANCE" else 10 * total
    assert (await api.balance("usernew1"))["balance"] == expected_balance
    assert await api.ledger_sum() == 0
    # The losers' other store invoices were not reserved.
    winner = next(a for a in answers if a.status == 200).body["invoice"]
    losers = [b for b, a in zip(bodies, answers, strict=True) if a.status == 400]
    others = [b["transaction"][1]["invoice_onmarket"] for b in losers]
    assert (await api.checkout(invoice_onmarket=others))["invoice"] != winner


async def test_store_invoice_lost_in_a_race_is_named_at_its_transaction(api: Api) -> None:
    """A checkout losing a store invoice number in a race names transaction.<i>.invoice_onmarket."""
    # Which refusal a loser gets depends on interleaving (about half take the faulty one).
    for _ in range(10):
        shared = fresh_numbers(1)[0]
        bodies = [checkout_body(invoice_onmarket=[shared]) for _ in range(10)]
        answers = await asyncio.gather(*(post(api, body) for body in bodies))
        for answer in answers:
            if answer.status != 200:
                assert leaf_paths(answer.body["errors"]) == {"transaction.0.invoice_onmarket"}


# -- 10. Idempotency-Key ---------------------------------------------------------------------------


async def test_idempotent_retry_answers_the_first_answer(api: Api) -> None:
    """Same key and body again: the same answer, and still one invoice and one debit."""
    body = checkout_body(source="BALANCE")
    total = total_of(body)
    await api.top_up("usernew1", 3 * total)

    first = await post(api, body, headers=key_header("retry-1"))
    second = await post(api, body, headers=key_header("retry-1"))

    assert (first.status, second.status) == (200, 200), (first.body, second.body)
    assert second.body == first.body
    assert await invoice_count(api) == 1
    assert (await api.balance("usernew1"))["balance"] == 2 * total
    assert await api.ledger_sum() == 0


async def test_idempotent_retry_of_a_xendit_checkout_keeps_its_payment_url(api: Api) -> None:
    """A XENDIT retry answers the same invoice, gateway reference and URL: nothing new is made."""
    body = checkout_body()
    first = await post(api, body, headers=key_header("xendit-retry"))
    before = await snapshot(api)
    # Same JSON, keys in another order: the same request.
    reordered = dict(reversed(list(body.items())))
    second = await post(api, reordered, headers=key_header("xendit-retry"))
    assert second.status == 200
    assert second.body == first.body
    await assert_unchanged(api, before)


async def test_idempotency_key_with_another_body_is_409(api: Api) -> None:
    """Same key, different body: 409 IDEMPOTENCY_KEY_REUSED, and nothing is created."""
    await post(api, checkout_body(), headers=key_header("reused"))
    before = await snapshot(api)

    answer = await post(api, checkout_body(), headers=key_header("reused"))

    assert answer.status == 409, answer.body
    assert answer.body == {
        "message": "Idempotency-Key was already used with a different request",
        "code": "IDEMPOTENCY_KEY_REUSED",
    }
    await assert_unchanged(api, before)


async def test_idempotency_keys_belong_to_one_buyer(api: Api) -> None:
    """Two buyers may use the same key: each gets its own invoice."""
    mine = await post(api, checkout_body(), buyer="usernew1", headers=key_header("shared-key"))
    theirs = await post(api, checkout_body(), buyer="seller1", headers=key_header("shared-key"))

    assert (mine.status, theirs.status) == (200, 200), (mine.body, theirs.body)
    assert mine.body["invoice"] != theirs.body["invoice"]
    assert (await api.detail(theirs.body["invoice"], viewer="seller1"))["username"] == "seller1"
    assert await invoice_count(api) == 2


async def test_concurrent_requests_with_one_key_make_one_invoice_and_one_debit(api: Api) -> None:
    """Ten concurrent identical requests with one key: one invoice, one debit, one answer."""
    for round_ in range(1, 11):
        body, answers = await one_key_burst(api, f"concurrent-{round_}")

        succeeded = [a.body for a in answers if a.status == 200]
        assert succeeded, [a.body for a in answers]
        assert all(answer == succeeded[0] for answer in succeeded)
        assert await invoice_count(api) == round_
        assert (await api.balance("usernew1"))["balance"] == round_ * 9 * total_of(body)
        assert await api.ledger_sum() == 0


async def test_concurrent_requests_with_one_key_all_get_the_first_answer(api: Api) -> None:
    """Every one of ten concurrent same-key requests answers 200 with the same invoice."""
    # The refusal depends on interleaving (it hits about half the bursts), so 20 bursts.
    for round_ in range(20):
        _, answers = await one_key_burst(api, f"burst-{round_}")
        assert [a.status for a in answers] == [200] * 10, [a.body for a in answers]
        assert len({a.body["invoice"] for a in answers}) == 1


async def test_idempotency_key_expires_after_24_hours(api: Api, clock: FakeClock) -> None:
    """After 24 h a key no longer remembers its request: it may carry a new one."""
    first = await post(api, checkout_body(), headers=key_header("daily"))
    clock.advance(86401)

    second = await post(api, checkout_body(), headers=key_header("daily"))

    assert (first.status, second.status) == (200, 200), second.body
    assert second.body["invoice"] != first.body["invoice"]
    assert await invoice_count(api) == 2


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "key",
    ["k" * 300, "k" * 256, "has space", "tab\tkey"],
    ids=["300_chars", "256_chars", "space", "tab"],
)
async def test_invalid_idempotency_key_is_refused(api: Api, key: str) -> None:
    """A key that is not 1 to 255 printable ASCII characters answers 400."""
    before = await snapshot(api)
    answer = await post(api, checkout_body(), headers=key_header(key))
    assert_validation_error(answer, "Idempotency-Key")
    await assert_unchanged(api, before)


async def test_idempotency_key_of_255_characters_is_accepted(api: Api) -> None:
    """255 printable characters is the longest key."""
    answer = await post(api, checkout_body(), headers=key_header("k" * 255))
    assert answer.status == 200, answer.body


# -- 11. authentication ----------------------------------------------------------------------------


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Token abc",
        "bearer-less garbage",
        "Bearer garbage",
        "Bearer abc.def",
        "Basic dXNlcm5ldzE6dXNlcm5ldzE=",
        "FOREIGN",
        "TAMPERED",
    ],
    ids=[
        "no_header",
        "empty",
        "bearer_alone",
        "bearer_blank",
        "other_scheme",
        "no_scheme",
        "garbage",
        "garbage_with_dot",
        "basic_credentials",
        "other_secret",
        "tampered_payload",
    ],
)
async def test_checkout_without_a_valid_token_is_401(
    api: Api, clock: FakeClock, authorization: str | None
) -> None:
    """Missing, malformed, forged or foreign credentials answer 401 Auth Error."""
    headers: dict[str, str] = {}
    if authorization == "FOREIGN":
        headers["Authorization"] = f"Bearer {foreign_token(clock)}"
    elif authorization == "TAMPERED":
        payload, signature = api.bearer("usernew1")["Authorization"].split(".")
        headers["Authorization"] = f"{payload[:-2]}xx.{signature}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    before = await snapshot(api)

    answer = await post(api, checkout_body(), buyer=None, headers=headers)

    assert (answer.status, answer.body) == (401, AUTH_ERROR)
    await assert_unchanged(api, before)


async def test_expired_token_is_401(api: Api, clock: FakeClock) -> None:
    """A token past its 24 h answers 401 Auth Error."""
    headers = api.bearer("usernew1")
    clock.advance(86401)
    before = await snapshot(api)

    answer = await post(api, checkout_body(), buyer=None, headers=headers)

    assert (answer.status, answer.body) == (401, AUTH_ERROR)
    await assert_unchanged(api, before)


async def test_auth_is_checked_before_the_body(api: Api) -> None:
    """Without credentials even a malformed body answers 401, not a validation error."""
    answer = await post(api, raw=b"{not json", buyer=None)
    assert (answer.status, answer.body) == (401, AUTH_ERROR)


@pytest.mark.parametrize("account", ["onmarket", "ondelivery", "admin"])
async def test_platform_and_admin_tokens_are_403(api: Api, account: str) -> None:
    """Only buyers check out: platform and admin tokens answer 403 FORBIDDEN."""
    before = await snapshot(api)
    answer = await post(api, checkout_body(), buyer=account)
    assert answer.status == 403, answer.body
    assert (answer.body["message"], answer.body["code"]) == ("Forbidden", "FORBIDDEN")
    await assert_unchanged(api, before)


# -- 12. X-Request-ID ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"), [(checkout_body(), 200), ({"total_amount": 1}, 400)], ids=["200", "400"]
)
async def test_request_id_is_echoed(api: Api, body: Json, status: int) -> None:
    """A client's X-Request-ID comes back on the answer, success or error."""
    answer = await post(api, body, headers={"X-Request-ID": "client-req-42.a:b_c"})
    assert answer.status == status, answer.body
    assert answer.headers["X-Request-ID"] == "client-req-42.a:b_c"


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    ("body", "status", "buyer"),
    [
        (checkout_body(), 200, "usernew1"),
        ({"total_amount": 1}, 400, "usernew1"),
        (checkout_body(), 401, None),
    ],
    ids=["200", "400", "401"],
)
async def test_request_id_is_generated_when_absent(
    api: Api, body: Json, status: int, buyer: str | None
) -> None:
    """Without X-Request-ID the service makes one up, different for each request."""
    first = await post(api, body, buyer=buyer)
    second = await post(api, {"total_amount": 1}, buyer=buyer)
    assert first.status == status, first.body
    generated = first.headers["X-Request-ID"]
    assert re.fullmatch(r"[A-Za-z0-9._:-]{16,128}", generated)
    assert second.headers["X-Request-ID"] != generated


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("given", ["has spaces", "x" * 200, "semi;colon"])
async def test_unsafe_request_id_is_replaced(api: Api, given: str) -> None:
    """An X-Request-ID unfit for logs (spaces, over 128 chars, odd symbols) is replaced."""
    answer = await post(api, checkout_body(), headers={"X-Request-ID": given})
    assert answer.status == 200, answer.body
    replaced = answer.headers["X-Request-ID"]
    assert replaced != given
    assert re.fullmatch(r"[A-Za-z0-9._:-]{16,128}", replaced)
