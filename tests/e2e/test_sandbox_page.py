"""The sandbox gateway's checkout page and its buttons, over HTTP (no browser).

The page shows the invoice (id, total, each store's lines, expiry with a countdown, the QR code
for QRIS) with Pay and Cancel payment while it is PENDING, and its final state otherwise. It
loads nothing from anywhere but the service, and escapes everything it shows. The buttons
record the payment (or the expiry) at the sandbox gateway and send the gateway's callback;
``deliver_callback: false`` pays at the gateway only, as if the callback were lost.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
import segno

from service.application import Context, RegisterUser
from service.gateway.port import EXPIRED, PAID
from service.gateway.qris import parse_emv
from service.gateway.sandbox import SandboxGateway
from service.http.keys import GATEWAY, SERVICE
from service.security import hash_password
from tests.e2e.conftest import Api, FakeClock, checkout_body

BUYER = "usernew1"
TTL = 2 * 3600
TOTAL = 40200  # the default two-store checkout
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NOT_FOUND = {"message": "Not found", "code": "NOT_FOUND"}


# -- reading the page ------------------------------------------------------------------------

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return re.sub(r"\s+", " ", "".join(parts).replace("\xa0", " ")).strip()

    def all(self, tag: str) -> list[Node]:
        found = [self] if self.tag == tag else []
        for child in self.children:
            if isinstance(child, Node):
                found.extend(child.all(tag))
        return found

    def by_id(self, id_: str) -> Node | None:
        if self.attrs.get("id") == id_:
            return self
        for child in self.children:
            if isinstance(child, Node) and (hit := child.by_id(id_)):
                return hit
        return None

    def walk(self) -> list[Node]:
        return [self, *(n for c in self.children if isinstance(c, Node) for n in c.walk())]


class _TreeBuilder(HTMLParser):
    """A strict little DOM: every non-void element must be closed by its own end tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(page: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


@dataclass
class Page:
    html: str
    dom: Node
    headers: dict[str, str]

    @property
    def status(self) -> str:
        return self.dom.all("main")[0].attrs["data-status"]

    def text_of(self, id_: str) -> str:
        node = self.dom.by_id(id_)
        assert node is not None, f"no #{id_}"
        return node.text()

    @property
    def buttons(self) -> list[str]:
        return [b.text() for b in self.dom.all("button")]

    @property
    def rows(self) -> list[list[str]]:
        body = self.dom.all("tbody")[0]
        return [[td.text() for td in tr.all("td")] for tr in body.all("tr")]

    def form(self, action_end: str) -> Node:
        forms = [f for f in self.dom.all("form") if f.attrs["action"].endswith(action_end)]
        assert len(forms) == 1, forms
        return forms[0]


async def page(api: Api, reference: str) -> Page:
    response = await api.client.get(f"/sandbox/checkout/{reference}")
    text = await response.text()
    assert response.status == 200, text
    assert response.content_type == "text/html"
    return Page(text, parse_html(text), dict(response.headers))


async def wait_for_page(api: Api, reference: str, status: str, within: float = 2.0) -> Page:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        shown = await page(api, reference)
        if shown.status == status:
            return shown
        assert asyncio.get_running_loop().time() < deadline, shown.status
        await asyncio.sleep(0.01)


def idr(amount: int) -> str:
    return "Rp " + f"{amount:,}".replace(",", ".")


async def form_post(api: Api, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    response = await api.client.post(path, data=data or {}, headers=FORM, allow_redirects=False)
    return response.status, response.headers.get("Location", "")


async def cancel_payment(api: Api, reference: str, expect: int = 200) -> dict[str, Any]:
    response = await api.client.post(f"/sandbox/invoices/{reference}/cancel", json={})
    body: dict[str, Any] = await response.json()
    assert response.status == expect, body
    return body


def sandbox(api: Api) -> SandboxGateway:
    gateway = api.client.app[GATEWAY]
    assert isinstance(gateway, SandboxGateway)
    return gateway


# -- what the page shows ---------------------------------------------------------------------


async def test_xendit_page_shows_the_invoice_its_stores_expiry_and_buttons(api: Api) -> None:
    """Invoice id, total in rupiah, one row per store with every amount, the expiry and its
    countdown, a Pending badge, and the Pay and Cancel payment buttons."""
    body = checkout_body()
    created = await api.checkout(transaction=body["transaction"], total_amount=TOTAL)

    shown = await page(api, created["xendit_invoice"])

    assert shown.text_of("invoice-id") == created["invoice"]
    assert shown.text_of("total") == idr(TOTAL) == "Rp 40.200"
    assert shown.status == "PENDING"
    assert shown.text_of("status") == "Pending"
    assert shown.rows == [
        [
            line["invoice_onmarket"],
            line["seller_username"],
            idr(line["amount"]),
            idr(line["freight_charge"]),
            idr(line["insurance_amount"]),
            idr(line["amount"] + line["freight_charge"] + line["insurance_amount"]),
            "PENDING",
        ]
        for line in body["transaction"]
    ]
    expires = shown.dom.by_id("expires-at")
    assert expires is not None
    assert expires.attrs["datetime"] == created["expired_at"] == "2026-03-01T10:00:00.000Z"
    assert shown.text_of("countdown") == "2:00:00 left"
    assert shown.buttons == ["Pay", "Cancel payment"]
    assert shown.form("/pay").attrs["method"] == "post"
    assert shown.form("/cancel").attrs["method"] == "post"
    assert "<svg" not in shown.html  # no QR code for an invoice paid at the gateway's page
    assert shown.headers["Cache-Control"] == "no-store"


async def test_the_countdown_follows_the_apps_clock(api: Api, clock: FakeClock) -> None:
    """The countdown is computed from the service's clock, so it reads right without JS and
    whatever the browser's clock says."""
    reference = (await api.checkout())["xendit_invoice"]
    clock.advance(3600 + 59 * 60 + 30.7)
    shown = await page(api, reference)
    countdown = shown.dom.by_id("countdown")
    assert countdown is not None
    assert countdown.attrs["data-remaining"] == "29"
    assert countdown.text() == "0:29 left"
    clock.advance(-3600)
    assert (await page(api, reference)).text_of("countdown") == "1:00:29 left"


def svg_modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules segno's SVG path draws (h runs of the line's length, m/M moves)."""
    root = ET.fromstring(svg)  # also: well-formed XML
    paths = [el for el in root.iter() if el.attrib.get("class") == "qrline"]
    assert len(paths) == 1
    x = y = 0.0
    dark: set[tuple[int, int]] = set()
    for command, args in re.findall(r"([MmHhVv])([^MmHhVv]*)", paths[0].attrib["d"]):
        numbers = [float(n) for n in args.replace(",", " ").split()]
        if command == "M":
            x, y = numbers
        elif command == "m":
            x, y = x + numbers[0], y + numbers[1]
        elif command == "h":
            dark.update((int(x) + i, int(y)) for i in range(int(numbers[0])))
            x += numbers[0]
        else:
            raise AssertionError(f"unexpected path command {command}")
    return dark


def qr_matches(svg: str, payload: str) -> bool:
    """Whether ``svg`` draws the QR code of ``payload`` (at any error correction level)."""
    drawn = svg_modules(svg)
    border = min(x for x, _ in drawn)  # the top-left finder pattern starts with a dark module
    for level in "lmqh":
        code = segno.make_qr(payload, error=level, boost_error=False)
        expected = {
            (x + border, y + border)
            for y, row in enumerate(code.matrix)
            for x, bit in enumerate(row)
            if bit
        }
        if drawn == expected:
            return True
    return False


async def test_qris_page_shows_the_qr_code_of_its_qr_string(api: Api) -> None:
    """A QRIS invoice's page embeds its qr_string as an inline SVG QR code (no image file),
    and the payload itself under the code."""
    created = await api.checkout(source="QRIS")
    qr_string = created["qr_string"]
    assert parse_emv(qr_string)["54"] == str(TOTAL)

    shown = await page(api, created["xendit_invoice"])

    assert shown.text_of("invoice-id") == created["invoice"]
    assert shown.text_of("total") == "Rp 40.200"
    assert shown.buttons == ["Pay", "Cancel payment"]
    svgs = re.findall(r"<svg\b.*?</svg>", shown.html, flags=re.DOTALL)
    assert len(svgs) == 1
    assert qr_matches(svgs[0], qr_string)
    assert not qr_matches(svgs[0], qr_string[:-1] + ("0" if qr_string[-1] != "0" else "1"))
    assert qr_string in shown.dom.text()


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_the_page_loads_nothing_from_elsewhere(api: Api, source: str) -> None:
    """No URL to another host anywhere, no script or stylesheet file, forms post back to the
    service itself, and a Content-Security-Policy that would block anything else."""
    created = await api.checkout(source=source)
    shown = await page(api, created["xendit_invoice"])

    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]", shown.html, flags=re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc=", shown.html, flags=re.IGNORECASE)
    assert "@import" not in shown.html
    assert "url(" not in shown.html
    for node in shown.dom.walk():
        for name in ("src", "href", "action", "xlink:href", "formaction"):
            value = node.attrs.get(name)
            if value is not None:
                assert value.startswith(("/sandbox/", "data:")), (node.tag, name, value)
    assert [n.tag for n in shown.dom.walk() if n.tag in ("script", "style")] == ["style", "script"]
    csp = shown.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce is not None
    assert shown.dom.all("script")[0].attrs["nonce"] == nonce.group(1)
    assert shown.dom.all("style")[0].attrs["nonce"] == nonce.group(1)


async def test_everything_the_page_shows_is_escaped(api: Api) -> None:
    """A seller name or store invoice number holding markup is shown as text, never run."""
    seller = '<script>alert("x")</script>'
    number = "<b onmouseover='x'>&amp;\"1</b>"
    body = checkout_body(invoice_onmarket=[number, "INV/ONM/ESC-2"])
    body["transaction"][0]["seller_username"] = seller
    # A seller must be an account: one whose name holds markup (nothing in a name forbids it).
    register = RegisterUser(seller, "buyer", None, hash_password("escaped-seller"))
    await api.client.app[SERVICE].handle(register, Context("test"))
    created = await api.checkout(transaction=body["transaction"], total_amount=TOTAL)

    shown = await page(api, created["xendit_invoice"])

    assert "<script>alert" not in shown.html
    assert "<b " not in shown.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in shown.html
    assert shown.rows[0][:2] == [number, seller]  # shown as text, exactly
    assert len(shown.dom.all("script")) == 1  # only the page's own


async def test_an_unknown_reference_is_404(api: Api) -> None:
    for method, path in [
        ("GET", "/sandbox/checkout/no-such-reference"),
        ("POST", "/sandbox/invoices/no-such-reference/pay"),
        ("POST", "/sandbox/invoices/no-such-reference/cancel"),
    ]:
        response = await api.client.request(method, path, json={})
        assert response.status == 404
        assert await response.json() == NOT_FOUND


# -- the page in each state ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_a_paid_invoice_shows_paid_and_no_buttons(api: Api, source: str) -> None:
    created = await api.checkout(source=source)
    await api.pay(created["xendit_invoice"])

    shown = await page(api, created["xendit_invoice"])

    assert (shown.status, shown.text_of("status")) == ("PAID", "Paid")
    assert shown.text_of("state-message").startswith("Paid.")
    assert shown.buttons == []
    assert shown.dom.all("form") == []
    assert shown.dom.by_id("countdown") is None
    assert "<svg" not in shown.html  # nothing left to scan
    assert [row[-1] for row in shown.rows] == ["PAID", "PAID"]


async def test_an_expired_invoice_shows_expired_and_no_buttons(api: Api, clock: FakeClock) -> None:
    """Expired from the moment expired_at passes, whether or not the expiry task wrote it."""
    created = await api.checkout()
    clock.advance(TTL)

    shown = await page(api, created["xendit_invoice"])

    assert (shown.status, shown.text_of("status")) == ("EXPIRED", "Expired")
    assert shown.buttons == []
    assert shown.dom.by_id("countdown") is None
    await api.wait_until_expired_in_view(created["invoice"])
    assert (await page(api, created["xendit_invoice"])).buttons == []


async def test_a_canceled_invoice_shows_canceled_and_no_buttons(api: Api) -> None:
    created = await api.checkout()
    await api.platform("cancel", invoice_id=created["invoice"])

    shown = await page(api, created["xendit_invoice"])

    assert (shown.status, shown.text_of("status")) == ("CANCELED", "Canceled")
    assert shown.buttons == []
    assert [row[-1] for row in shown.rows] == ["CANCELED", "CANCELED"]


@pytest.mark.parametrize(
    ("action", "final", "label"),
    [("done", "COMPLETED", "Completed"), ("cancel", "REFUNDED", "Refunded")],
)
async def test_completed_and_refunded_invoices_show_their_state(
    api: Api, action: str, final: str, label: str
) -> None:
    body = checkout_body()
    created = await api.checkout(transaction=body["transaction"], total_amount=TOTAL)
    await api.pay(created["xendit_invoice"])
    for line in body["transaction"]:
        target = {"invoice_id": created["invoice"], "invoice_onmarket": line["invoice_onmarket"]}
        if action == "cancel":
            await api.platform("cancel", buyer_username=BUYER, **target)
        else:
            await api.platform("done", **target)

    shown = await wait_for_page(api, created["xendit_invoice"], final)

    assert shown.text_of("status") == label
    assert shown.buttons == []
    assert [row[-1] for row in shown.rows] == [final] * 2


# -- Pay ---------------------------------------------------------------------------------------


async def test_the_pay_button_pays_and_comes_back_to_the_paid_page(api: Api) -> None:
    """The page's form posts the payment id it was rendered with; 303 back to the page."""
    created = await api.checkout()
    reference = created["xendit_invoice"]
    pay_form = (await page(api, reference)).form("/pay")
    payment_id = pay_form.all("input")[0].attrs["value"]
    assert payment_id.startswith("sandbox-")

    status, location = await form_post(api, pay_form.attrs["action"], {"payment_id": payment_id})

    assert (status, location) == (303, f"/sandbox/checkout/{reference}")
    assert (await page(api, reference)).status == "PAID"
    assert (await api.detail(created["invoice"]))["status"] == "PAID"
    known = await sandbox(api).status(reference)
    assert (known.status, known.payment_id, known.paid_amount) == (PAID, payment_id, TOTAL)
    await api.assert_balanced()


async def test_pressing_pay_twice_pays_once(api: Api) -> None:
    """A double submit of the same page is one payment: no second charge, nothing credited."""
    created = await api.checkout()
    pay_form = (await page(api, created["xendit_invoice"])).form("/pay")
    data = {"payment_id": pay_form.all("input")[0].attrs["value"]}

    first = await form_post(api, pay_form.attrs["action"], data)
    second = await form_post(api, pay_form.attrs["action"], data)

    assert first[0] == second[0] == 303
    assert (await api.detail(created["invoice"]))["status"] == "PAID"
    assert f"buyer:{BUYER}" not in await api.accounts()
    await api.assert_balanced()


async def test_the_pay_button_of_a_stale_page_takes_no_money(api: Api, clock: FakeClock) -> None:
    """Pay pressed on a page left open past the expiry: back to the page, which says EXPIRED;
    nothing is paid at the gateway and nothing lands on the buyer's balance."""
    created = await api.checkout()
    reference = created["xendit_invoice"]
    pay_form = (await page(api, reference)).form("/pay")
    clock.advance(TTL + 1)

    status, location = await form_post(
        api, pay_form.attrs["action"], {"payment_id": "sandbox-stale"}
    )

    assert (status, location) == (303, f"/sandbox/checkout/{reference}")
    assert (await page(api, reference)).status == "EXPIRED"
    assert (await api.detail(created["invoice"]))["status"] == "EXPIRED"
    assert (await sandbox(api).status(reference)).status != PAID
    assert f"buyer:{BUYER}" not in await api.accounts()


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_a_scripted_payment_is_recorded_at_the_gateway(api: Api, source: str) -> None:
    created = await api.checkout(source=source)
    reference = created["xendit_invoice"]

    answer = await api.pay(reference, payment_id="script-1")

    assert answer == {
        "message": "CALLBACK SENT",
        "payment_id": "script-1",
        "callback": {"status": 200, "body": {"message": "PAID"}},
    }
    known = await sandbox(api).status(reference)
    assert (known.status, known.payment_id, known.paid_amount) == (PAID, "script-1", TOTAL)
    assert known.paid_at == api.clock()


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_a_payment_whose_callback_is_lost(api: Api, source: str) -> None:
    """deliver_callback false: the gateway has the money, the service does not know yet; the
    callback delivered later (same payment id) pays the invoice once."""
    created = await api.checkout(source=source)
    reference, invoice = created["xendit_invoice"], created["invoice"]

    answer = await api.pay(reference, payment_id="lost-1", deliver_callback=False)

    assert answer == {"message": "PAID AT GATEWAY", "payment_id": "lost-1", "callback": None}
    assert (await api.detail(invoice))["status"] == "PENDING"
    assert (await page(api, reference)).status == "PENDING"
    assert await api.accounts() == {}
    known = await sandbox(api).status(reference)
    assert (known.status, known.payment_id, known.paid_amount) == (PAID, "lost-1", TOTAL)

    late = await api.pay(reference, payment_id="lost-1")
    assert late["callback"] == {"status": 200, "body": {"message": "PAID"}}
    assert (await api.detail(invoice))["status"] == "PAID"
    await api.assert_balanced()


async def test_paying_a_non_integer_amount_without_callback_is_refused(api: Api) -> None:
    created = await api.checkout()
    answer = await api.pay(
        created["xendit_invoice"], expect=400, amount="40200", deliver_callback=False
    )
    assert answer["errors"] == {"amount": ["Must be an integer."]}
    assert (await sandbox(api).status(created["xendit_invoice"])).status != PAID


@pytest.mark.parametrize("value", ["false", 0, None, [False]])
async def test_deliver_callback_must_be_a_boolean(api: Api, value: Any) -> None:
    created = await api.checkout()
    answer = await api.pay(created["xendit_invoice"], expect=400, deliver_callback=value)
    assert answer["code"] == "VALIDATION"
    assert "deliver_callback" in answer["errors"]
    assert (await sandbox(api).status(created["xendit_invoice"])).status != PAID
    assert (await api.detail(created["invoice"]))["status"] == "PENDING"


# -- Cancel payment ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_cancel_payment_expires_the_invoice(api: Api, source: str) -> None:
    """The buyer abandons the payment: the gateway expires it and its EXPIRED callback expires
    the invoice (QRIS ones too)."""
    created = await api.checkout(source=source)
    reference, invoice = created["xendit_invoice"], created["invoice"]

    answer = await cancel_payment(api, reference)

    assert answer == {
        "message": "CALLBACK SENT",
        "callback": {"status": 200, "body": {"message": "EXPIRED"}},
    }
    assert (await api.detail(invoice))["status"] == "EXPIRED"
    assert (await sandbox(api).status(reference)).status == EXPIRED
    shown = await page(api, reference)
    assert (shown.status, shown.buttons) == ("EXPIRED", [])
    assert await api.accounts() == {}


async def test_the_cancel_payment_button_comes_back_to_the_expired_page(api: Api) -> None:
    created = await api.checkout()
    reference = created["xendit_invoice"]
    cancel_form = (await page(api, reference)).form("/cancel")

    status, location = await form_post(api, cancel_form.attrs["action"])

    assert (status, location) == (303, f"/sandbox/checkout/{reference}")
    shown = await page(api, reference)
    assert (shown.status, shown.text_of("status"), shown.buttons) == ("EXPIRED", "Expired", [])
    assert (await api.detail(created["invoice"]))["status"] == "EXPIRED"


async def test_cancel_payment_of_a_paid_invoice_changes_nothing(api: Api) -> None:
    created = await api.checkout()
    reference = created["xendit_invoice"]
    await api.pay(reference, payment_id="kept-1")

    answer = await cancel_payment(api, reference)

    assert answer["callback"] == {"status": 200, "body": {"message": "IGNORED"}}
    assert (await api.detail(created["invoice"]))["status"] == "PAID"
    known = await sandbox(api).status(reference)
    assert (known.status, known.payment_id) == (PAID, "kept-1")
    # And from a stale page: back to the page, nothing sent.
    assert await form_post(api, f"/sandbox/invoices/{reference}/cancel") == (
        303,
        f"/sandbox/checkout/{reference}",
    )
    assert (await page(api, reference)).status == "PAID"
