"""Every answer matches the schema that documents it (service/http/schemas/)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from service.http import schemas
from tests.e2e.conftest import Api


def assert_matches(schema: type[Schema], body: dict[str, Any]) -> None:
    errors = schema().validate(body)
    assert errors == {}, errors


async def test_checkout_answers_match_their_schema_for_every_source(api: Api) -> None:
    """XENDIT, QRIS and BALANCE answers all fit CheckoutAnswer."""
    await api.top_up("usernew1", 10**6)
    for source in ("XENDIT", "QRIS", "BALANCE"):
        assert_matches(schemas.CheckoutAnswer, await api.checkout(source=source))


async def test_detail_balance_and_messages_match_their_schemas(api: Api) -> None:
    """Detail, balance, top-up, done and error answers fit their schemas."""
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])
    assert_matches(schemas.DetailAnswer, await api.detail(created["invoice"]))
    assert_matches(schemas.MessageAnswer, await api.platform("done", invoice_id=created["invoice"]))
    assert_matches(schemas.TopUpAnswer, await api.top_up("seller1", 5))
    assert_matches(schemas.BalanceAnswer, await api.balance("seller1"))
    refused = await api.platform("done", expect=400, invoice_id=created["invoice"])
    assert_matches(schemas.ErrorAnswer, refused)
