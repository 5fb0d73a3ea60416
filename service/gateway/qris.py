"""Build and check the ``qr_string`` that the sandbox gateway returns for QRIS checkouts.

A QRIS code is an EMVCo merchant-presented QR payload: a flat run of tag-length-value data
objects (two-digit tag, two-digit length, value), some of which are templates holding their own
data objects, closed by tag 63, a CRC-16/CCITT-FALSE over everything before its value.
``build_qris`` writes a dynamic payload (point of initiation 12) carrying one amount in IDR and
the invoice reference; ``parse_emv`` reads the top level back and refuses anything malformed or
whose CRC does not match, so the gateway can check its own output the way a wallet app would.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Merchant", "build_qris", "crc16_ccitt_false", "parse_emv"]

QRIS_GUID = "ID.CO.QRIS.WWW"
MERCHANT_CRITERIA = "UKE"
CURRENCY_IDR = "360"
COUNTRY_ID = "ID"
MAX_AMOUNT = 10**12

# EMV/QRIS field limits, in characters.
_NAME_MAX = 25
_CITY_MAX = 15
_POSTAL_MAX = 10
_REFERENCE_MAX = 25
_PAN_MAX = 19
_MERCHANT_ID_DIGITS = 13
_LENGTH_MAX = 99

_DIGITS = frozenset("0123456789")
_UPPER_HEX = frozenset("0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class Merchant:
    """The merchant a QRIS payload pays; validated on construction because it is configuration."""

    name: str
    city: str
    account_id: str
    category: str = "5999"
    postal_code: str | None = None

    def __post_init__(self) -> None:
        # A misconfigured merchant would otherwise surface as unscannable codes at checkout,
        # long after start-up; failing here points at the configuration instead.
        _require_printable("merchant name", self.name)
        _require_printable("merchant city", self.city)
        if not self.name.strip() or not self.city.strip():
            raise ValueError("merchant name and city must not be blank")
        if not _is_digits(self.account_id) or len(self.account_id) > _PAN_MAX:
            raise ValueError(f"account_id must be 1 to {_PAN_MAX} digits: {self.account_id!r}")
        if not _is_digits(self.category) or len(self.category) != 4:
            raise ValueError(f"category must be a 4-digit MCC: {self.category!r}")
        if self.postal_code is not None:
            _require_printable("postal code", self.postal_code)
            if not self.postal_code or len(self.postal_code) > _POSTAL_MAX:
                raise ValueError(f"postal code must be 1 to {_POSTAL_MAX} characters")


def build_qris(merchant: Merchant, amount: int, reference: str) -> str:
    """Dynamic (point of initiation 12) QRIS payload for ``amount`` IDR.

    ``reference`` goes in tag 62 sub-tag 05 (reference label). Raises ValueError for an amount
    that is not a positive int of at most 10**12, or a reference that is empty, longer than 25
    characters or not printable ASCII.
    """
    # bool is an int subclass; True would otherwise become a payment of 1 IDR.
    if type(amount) is not int:
        raise ValueError(f"amount must be an int number of IDR, not {type(amount).__name__}")
    if not 0 < amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be between 1 and {MAX_AMOUNT} IDR: {amount}")
    _require_printable("reference", reference)
    # The reference is how a payment is matched to its invoice: a cut-down one could match the
    # wrong invoice or none, so it is refused rather than truncated.
    if not reference or len(reference) > _REFERENCE_MAX:
        raise ValueError(f"reference must be 1 to {_REFERENCE_MAX} characters: {reference!r}")

    account = (
        _tlv("00", QRIS_GUID)
        + _tlv("01", merchant.account_id)
        + _tlv("02", _merchant_id(merchant.account_id))
        + _tlv("03", MERCHANT_CRITERIA)
    )
    payload = (
        _tlv("00", "01")
        + _tlv("01", "12")
        + _tlv("26", account)
        + _tlv("52", merchant.category)
        + _tlv("53", CURRENCY_IDR)
        + _tlv("54", str(amount))
        + _tlv("58", COUNTRY_ID)
        # The spec lets long names and cities be cut: they are display text, not identifiers.
        + _tlv("59", merchant.name[:_NAME_MAX])
        + _tlv("60", merchant.city[:_CITY_MAX])
        + (_tlv("61", merchant.postal_code) if merchant.postal_code is not None else "")
        + _tlv("62", _tlv("05", reference))
        # The CRC covers its own tag and length, so they are part of what is summed.
        + "6304"
    )
    return payload + f"{crc16_ccitt_false(payload.encode('ascii')):04X}"


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data``: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def parse_emv(payload: str) -> dict[str, str]:
    """Top-level TLV parse: tag -> value (2-digit tag, 2-digit length).

    Raises ValueError on malformed input or a CRC that does not match.
    """
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        header = payload[pos : pos + 4]
        if len(header) < 4 or not _is_digits(header):
            raise ValueError(f"malformed EMV payload: bad tag/length at offset {pos}")
        tag, length = header[:2], int(header[2:])
        end = pos + 4 + length
        if end > len(payload):
            raise ValueError(f"malformed EMV payload: tag {tag} runs past the end")
        # A dict keeps only one value per tag, so a repeated tag (say a second amount) would
        # pass unnoticed; refuse it instead.
        if tag in fields:
            raise ValueError(f"malformed EMV payload: tag {tag} appears twice")
        fields[tag] = payload[pos + 4 : end]
        pos = end

    if next(iter(fields), None) != "00":
        raise ValueError("malformed EMV payload: tag 00 must come first")
    if next(reversed(fields)) != "63":
        raise ValueError("malformed EMV payload: tag 63 (CRC) must be the last data object")
    crc = fields["63"]
    # Uppercase only, as written by build_qris: a case change is still a change to the payload.
    if len(crc) != 4 or not set(crc) <= _UPPER_HEX:
        raise ValueError(f"malformed EMV payload: CRC must be 4 uppercase hex digits: {crc!r}")
    expected = crc16_ccitt_false(payload[:-4].encode("utf-8"))
    if int(crc, 16) != expected:
        raise ValueError(f"CRC mismatch: payload says {crc}, content gives {expected:04X}")
    return fields


def _tlv(tag: str, value: str) -> str:
    if not value:
        raise ValueError(f"tag {tag}: EMV data objects must not be empty")
    if len(value) > _LENGTH_MAX:
        raise ValueError(f"tag {tag}: value of {len(value)} characters does not fit 2 digits")
    return f"{tag}{len(value):02d}{value}"


def _merchant_id(account_id: str) -> str:
    # Sub-tag 02 holds at most 15 characters, so the usual 18-digit PAN cannot be repeated
    # there. Use the shape of a national merchant id instead, "ID" + 13 digits, taken from the
    # end of the PAN, where the merchant-specific digits are.
    return "ID" + account_id[-_MERCHANT_ID_DIGITS:].zfill(_MERCHANT_ID_DIGITS)


def _is_digits(text: str) -> bool:
    # str.isdigit also accepts non-ASCII digits such as "²", which EMV lengths cannot use.
    return bool(text) and set(text) <= _DIGITS


def _require_printable(what: str, text: str) -> None:
    # EMV lengths count characters and the CRC runs over bytes: outside printable ASCII the
    # two disagree, and many wallet apps cannot show such text anyway.
    if not all(" " <= ch <= "~" for ch in text):
        raise ValueError(f"{what} must be printable ASCII: {text!r}")
