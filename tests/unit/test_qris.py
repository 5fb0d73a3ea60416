"""Tests for the QRIS payload builder: its CRC, the data objects it writes, and what it refuses.

CRCs are checked against outside references rather than the module's own output alone: the
published CRC-16/CCITT-FALSE check value, the standard library's ``binascii.crc_hqx``, and a
QRIS payload published in a third party's API documentation with its CRC already computed.
"""

from __future__ import annotations

import binascii
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.gateway.qris import Merchant, build_qris, crc16_ccitt_false, parse_emv

MERCHANT = Merchant(
    name="OnIndonesia Sandbox",
    city="Jakarta",
    account_id="936000000000000001",
)

# The example in the docs of a public QRIS-parsing API (ppob-fake-api), produced by someone
# else's encoder; its CRC, A402, was checked against binascii.crc_hqx as well.
PUBLISHED_STATIC_QRIS = (
    "00020101021126550016ID.CO.SHOPEE.WWW01189360091800000000180202180303UBE51440014ID.CO.QRIS"
    ".WWW0215ID20190022915550303UBE5204839853033605802ID5906Baznas6013Jakarta Pusat61051034062"
    "070703A016304A402"
)

# The sample this module's brief offered: its tag 63 declares four characters but the string
# stops right after "6304", so there is no CRC in it to verify.
TRUNCATED_SAMPLE = (
    "00020101021126570011ID.DANA.WWW011893600915302259148502090225914850303UMI51440014ID.CO.QRIS"
    ".WWW0215ID10200176114730303UMI5204581253033605802ID5922Warung Sayur Bu Sugeng6010Kab. Kebum"
    "610554313620705031C86304"
)

printable_ascii = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _subfields(template: str) -> dict[str, str]:
    """Split a template's value into its data objects, independently of the module under test."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(template):
        tag, length = template[pos : pos + 2], int(template[pos + 2 : pos + 4])
        fields[tag] = template[pos + 4 : pos + 4 + length]
        pos += 4 + length
    assert pos == len(template), f"template overruns its length: {template!r}"
    return fields


def _with_crc(body: str) -> str:
    """Close ``body`` with a tag 63 whose CRC comes from the standard library, not the module."""
    body += "6304"
    return body + f"{binascii.crc_hqx(body.encode(), 0xFFFF):04X}"


def test_crc_of_standard_check_string_is_0x29b1() -> None:
    """CRC-16/CCITT-FALSE of b"123456789" is the catalogued check value 0x29B1."""
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@given(st.binary(max_size=300))
def test_crc_agrees_with_stdlib_crc_hqx_started_at_ffff(data: bytes) -> None:
    """The CRC equals binascii.crc_hqx with initial value 0xFFFF, the same algorithm."""
    assert crc16_ccitt_false(data) == binascii.crc_hqx(data, 0xFFFF)


def test_built_payload_parses_with_the_expected_fields() -> None:
    """A built payload parses and carries the fixed, amount, merchant and reference fields."""
    payload = build_qris(MERCHANT, 150_000, "INV-2024-000123")

    fields = parse_emv(payload)

    assert fields["00"] == "01"
    assert fields["01"] == "12"
    assert fields["52"] == "5999"
    assert fields["53"] == "360"
    assert fields["54"] == "150000"
    assert fields["58"] == "ID"
    assert fields["59"] == "OnIndonesia Sandbox"
    assert fields["60"] == "Jakarta"
    assert "61" not in fields
    assert _subfields(fields["62"]) == {"05": "INV-2024-000123"}
    assert len(fields["63"]) == 4
    assert set(fields["63"]) <= set("0123456789ABCDEF")
    assert list(fields)[-1] == "63"
    assert payload.endswith("6304" + fields["63"])
    assert payload == _with_crc(payload[:-8])


def test_merchant_account_template_carries_qris_guid() -> None:
    """Tag 26 holds the QRIS GUID, the account id, an NMID-shaped merchant id and criteria UKE."""
    fields = parse_emv(build_qris(MERCHANT, 10_000, "INV-1"))

    assert _subfields(fields["26"]) == {
        "00": "ID.CO.QRIS.WWW",
        "01": "936000000000000001",
        "02": "ID0000000000001",
        "03": "UKE",
    }


def test_postal_code_is_written_to_tag_61_when_given() -> None:
    """A merchant with a postal code gets tag 61."""
    merchant = Merchant("Toko Maju", "Bandung", "936000000000000002", postal_code="40111")

    assert parse_emv(build_qris(merchant, 5_000, "INV-2"))["61"] == "40111"


def test_long_merchant_name_and_city_are_truncated() -> None:
    """Names over 25 and cities over 15 characters are cut to fit, not refused."""
    merchant = Merchant(
        name="Koperasi Karyawan Sejahtera Bersama",
        city="Kota Administrasi Jakarta Selatan",
        account_id="936000000000000003",
    )

    fields = parse_emv(build_qris(merchant, 1, "INV-3"))

    assert fields["59"] == "Koperasi Karyawan Sejahte"
    assert fields["60"] == "Kota Administra"


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    reference=st.text(printable_ascii, min_size=1, max_size=25),
)
def test_any_valid_amount_and_reference_round_trip(amount: int, reference: str) -> None:
    """Every allowed amount and reference comes back unchanged from the parsed payload."""
    fields = parse_emv(build_qris(MERCHANT, amount, reference))

    assert fields["54"] == str(amount)
    assert _subfields(fields["62"]) == {"05": reference}


def test_published_qris_example_is_accepted() -> None:
    """A payload encoded by someone else's QRIS implementation passes parse_emv."""
    fields = parse_emv(PUBLISHED_STATIC_QRIS)

    assert fields["59"] == "Baznas"
    assert fields["61"] == "10340"
    assert fields["63"] == "A402"


def test_payload_whose_crc_value_is_missing_is_rejected() -> None:
    """A payload ending in a bare "6304", with no CRC digits after it, is malformed."""
    with pytest.raises(ValueError, match="runs past the end"):
        parse_emv(TRUNCATED_SAMPLE)


def test_changing_one_character_of_the_name_fails_the_crc() -> None:
    """Editing a character inside the merchant name is caught as a CRC mismatch."""
    payload = build_qris(MERCHANT, 150_000, "INV-2024-000123")
    tampered = payload.replace("OnIndonesia", "OnIndonesie")
    assert tampered != payload

    with pytest.raises(ValueError, match="CRC mismatch"):
        parse_emv(tampered)


def test_any_single_character_change_is_rejected() -> None:
    """Substituting any one character anywhere, CRC digits included, makes parsing fail."""
    payload = build_qris(MERCHANT, 150_000, "INV-2024-000123")

    for pos, char in enumerate(payload):
        replacement = "0" if char != "0" else "1"
        tampered = payload[:pos] + replacement + payload[pos + 1 :]
        with pytest.raises(ValueError, match=r"malformed|CRC mismatch"):
            parse_emv(tampered)


def test_repeated_tag_is_rejected_even_with_a_valid_crc() -> None:
    """A second amount cannot hide behind the first: duplicate tags are malformed."""
    payload = _with_crc("000201010212540410005802ID54071000000")

    with pytest.raises(ValueError, match="appears twice"):
        parse_emv(payload)


def test_payload_not_ending_with_tag_63_is_rejected() -> None:
    """Data after the CRC is refused, since the CRC would not cover it."""
    payload = _with_crc("0002010102125802ID") + "540510000"

    with pytest.raises(ValueError, match="must be the last"):
        parse_emv(payload)


def test_lowercase_crc_is_rejected() -> None:
    """The CRC must be uppercase hex, as the builder writes it."""
    payload = "0002010102125802ID6304"
    payload += f"{crc16_ccitt_false(payload.encode()):04x}"
    assert payload[-4:] != payload[-4:].upper(), "pick a body whose CRC has a letter in it"

    with pytest.raises(ValueError, match="uppercase"):
        parse_emv(payload)


@pytest.mark.parametrize("payload", ["", "00", "000201", "0002016304", "01021200020163040000"])
def test_fragments_without_a_proper_start_or_end_are_rejected(payload: str) -> None:
    """Empty input, cut-off data objects, a missing CRC or a wrong first tag are malformed."""
    with pytest.raises(ValueError, match="malformed"):
        parse_emv(payload)


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, 10**12 + 1])
def test_invalid_amounts_are_refused(amount: object) -> None:
    """Zero, negative, bool, fractional and over-limit amounts raise ValueError."""
    with pytest.raises(ValueError, match="amount"):
        build_qris(MERCHANT, cast(int, amount), "INV-1")


@pytest.mark.parametrize("amount", [1, 10**12])
def test_amount_limits_are_inclusive(amount: int) -> None:
    """1 IDR and 10**12 IDR are both accepted."""
    assert parse_emv(build_qris(MERCHANT, amount, "INV-1"))["54"] == str(amount)


def test_reference_of_25_characters_is_accepted() -> None:
    """The longest reference the reference label allows is written in full."""
    reference = "R" * 25

    fields = parse_emv(build_qris(MERCHANT, 1_000, reference))

    assert _subfields(fields["62"]) == {"05": reference}


@pytest.mark.parametrize("reference", ["R" * 26, "", "INV-ü", "INV\n1"])
def test_unusable_references_are_refused_not_altered(reference: str) -> None:
    """A reference that is too long, empty or not printable ASCII raises ValueError."""
    with pytest.raises(ValueError, match="reference"):
        build_qris(MERCHANT, 1_000, reference)


def test_non_ascii_merchant_name_is_refused() -> None:
    """A merchant configured with a non-ASCII name fails loudly at construction."""
    with pytest.raises(ValueError, match="merchant name"):
        Merchant(name="Kafé Kopi", city="Jakarta", account_id="936000000000000001")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("city", "Jakarta\t", "merchant city"),
        ("name", "   ", "blank"),
        ("account_id", "93600000000000000A", "account_id"),
        ("account_id", "9" * 20, "account_id"),
        ("category", "599", "category"),
        ("category", "５９９９", "category"),
        ("postal_code", "", "postal code"),
        ("postal_code", "12345678901", "postal code"),
    ],
)
def test_invalid_merchant_configuration_is_refused(field: str, value: str, message: str) -> None:
    """Bad merchant fields raise ValueError when the Merchant is built, not at checkout."""
    fields = {"name": "Toko", "city": "Jakarta", "account_id": "936000000000000001"}
    fields[field] = value

    with pytest.raises(ValueError, match=message):
        Merchant(**fields)


def test_payload_encodes_into_a_qr_code() -> None:
    """With segno installed, the payload fits a QR code at error correction level M."""
    segno = pytest.importorskip(
        "segno", reason="segno is not installed (it is not a project dependency yet)"
    )
    payload = build_qris(MERCHANT, 150_000, "INV-2024-000123")

    qr = segno.make(payload, error="m")

    assert qr.error == "M"
    assert not qr.is_micro
