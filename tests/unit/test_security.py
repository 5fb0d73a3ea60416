"""Unit tests for ``service.security``: scrypt password hashes, signed expiring tokens, and the
parsing of Bearer and Basic ``Authorization`` headers, including every malformed input an
attacker or a broken client can send, which must surface as the module's own exceptions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.security import (
    CredentialsError,
    TokenClaims,
    TokenError,
    hash_password,
    issue_token,
    parse_basic,
    parse_bearer,
    read_token,
    verify_password,
)

SECRET = b"k" * 32
OTHER_SECRET = b"q" * 32
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
ROLES = ["buyer", "platform", "admin"]
PLATFORMS = [None, "ONMARKET", "ONDELIVERY", "ONTICKET"]
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims(
    username: str = "alice",
    role: str = "buyer",
    platform: str | None = None,
    expires_at: datetime = LATER,
) -> TokenClaims:
    return TokenClaims(username=username, role=role, platform=platform, expires_at=expires_at)


def sign_raw(payload_part: str, secret: bytes = SECRET) -> str:
    """A token with a valid signature over any payload part, to reach the checks after it."""
    mac = hmac.digest(secret, payload_part.encode("ascii"), "sha256")
    return payload_part + "." + b64url(mac)


def sign_payload(payload: object, secret: bytes = SECRET) -> str:
    return sign_raw(b64url(json.dumps(payload).encode("utf-8")), secret)


def valid_payload(**changes: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "sub": "alice",
        "role": "buyer",
        "platform": None,
        "exp": int(LATER.timestamp() * 1000),
        "v": 1,
    }
    payload.update(changes)
    return payload


def replace_at(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


def scrypt_encoding(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> str:
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen)
    return f"scrypt${n}${r}${p}${b64url(salt)}${b64url(digest)}"


# --- passwords ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple")


def test_verify_password_accepts_the_password_that_was_hashed(stored: str) -> None:
    """The password a hash was made from verifies against it."""
    assert verify_password("correct horse battery staple", stored) is True


@pytest.mark.parametrize(
    "attempt",
    ["", "correct horse battery stapl", "Correct horse battery staple", "correct horse battery"],
)
def test_verify_password_rejects_a_wrong_password(stored: str, attempt: str) -> None:
    """Any other password, however close, verifies as False."""
    assert verify_password(attempt, stored) is False


def test_hashing_the_same_password_twice_gives_different_hashes() -> None:
    """Each hash gets its own random salt, so equal passwords don't look equal when stored."""
    first, second = hash_password("hunter2"), hash_password("hunter2")
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password("hunter2", first)
    assert verify_password("hunter2", second)


def test_hash_encodes_the_scrypt_parameters_salt_and_digest(stored: str) -> None:
    """The encoding names scrypt, n, r, p, a 16-byte salt and the 32-byte digest they produce."""
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    salt_bytes = base64.urlsafe_b64decode(salt + "==")
    assert len(salt_bytes) == 16
    expected = hashlib.scrypt(
        b"correct horse battery staple", salt=salt_bytes, n=2**14, r=8, p=1, dklen=32
    )
    assert digest == b64url(expected)


def test_verify_password_uses_the_parameters_in_the_encoding() -> None:
    """Hashes made with other parameters still verify, so the defaults can change later."""
    encoded = scrypt_encoding("s3cret", b"0123456789abcdef", n=2**10, r=4, p=2, dklen=24)
    assert verify_password("s3cret", encoded) is True
    assert verify_password("s3cre7", encoded) is False


def test_verify_password_fails_when_the_encoded_parameters_are_altered() -> None:
    """Changing a parameter in the encoding changes the digest, so verification fails."""
    encoded = scrypt_encoding("s3cret", b"0123456789abcdef", n=2**10, r=4, p=2, dklen=24)
    scheme, _n, r, p, salt, digest = encoded.split("$")
    assert verify_password("s3cret", "$".join([scheme, "2048", r, p, salt, digest])) is False


def test_passwords_are_hashed_as_utf8_text() -> None:
    """Non-ASCII passwords verify, and differ from look-alike spellings."""
    encoded = hash_password("pässwörd 🔑")
    assert verify_password("pässwörd 🔑", encoded) is True
    assert verify_password("passwörd 🔑", encoded) is False


def test_a_password_that_is_not_encodable_text_is_refused_without_echoing_it(stored: str) -> None:
    """A lone surrogate can't be hashed (ValueError, no context) and never verifies."""
    with pytest.raises(ValueError, match="not valid Unicode") as caught:
        hash_password("secret\ud800")
    assert "secret" not in str(caught.value)
    assert caught.value.__context__ is None
    assert verify_password("secret\ud800", stored) is False


def malformed_encodings(stored: str) -> list[str]:
    scheme, n, r, p, salt, digest = stored.split("$")
    return [
        "",
        "scrypt",
        "not a hash at all",
        stored + "$",
        "$".join([scheme, n, r, p, salt]),
        "$".join(["bcrypt", n, r, p, salt, digest]),
        "$".join(["SCRYPT", n, r, p, salt, digest]),
        "$".join([scheme, "abc", r, p, salt, digest]),
        "$".join([scheme, "", r, p, salt, digest]),
        "$".join([scheme, "+16384", r, p, salt, digest]),
        "$".join([scheme, " 16384", r, p, salt, digest]),
        "$".join([scheme, "16_384", r, p, salt, digest]),
        "$".join([scheme, "016384", r, p, salt, digest]),
        "$".join([scheme, "-16384", r, p, salt, digest]),
        "$".join([scheme, "16383", r, p, salt, digest]),
        "$".join([scheme, "1", r, p, salt, digest]),
        "$".join([scheme, "0", r, p, salt, digest]),
        "$".join([scheme, "1" + "0" * 5000, r, p, salt, digest]),
        "$".join([scheme, str(2**40), r, p, salt, digest]),
        "$".join([scheme, n, "0", p, salt, digest]),
        "$".join([scheme, n, "100000", p, salt, digest]),
        "$".join([scheme, n, r, "0", salt, digest]),
        "$".join([scheme, n, r, "1000000", salt, digest]),
        "$".join([scheme, str(2**20), "32", p, salt, digest]),
        "$".join([scheme, n, r, p, "", digest]),
        "$".join([scheme, n, r, p, salt, ""]),
        "$".join([scheme, n, r, p, salt + "=", digest]),
        "$".join([scheme, n, r, p, salt, digest + "=="]),
        "$".join([scheme, n, r, p, salt, "!" + digest[1:]]),
        "$".join([scheme, n, r, p, salt, "é" + digest[1:]]),
        "$".join([scheme, n, r, p, salt, digest[:-2]]),
        "$".join([scheme, n, r, p, salt, b64url(b"short")]),
        "$".join([scheme, n, r, p, salt, b64url(b"x" * 65)]),
        "$".join([scheme, n, r, p, salt, digest + "\n"]),
    ]


@pytest.mark.parametrize(("n", "r", "p"), [(2, 33, 1), (2, 1, 17)], ids=["r=33", "p=17"])
def test_verify_password_refuses_a_correct_hash_whose_cost_exceeds_the_bounds(
    n: int, r: int, p: int
) -> None:
    """A stored hash can't make verification arbitrarily expensive, even if it would match."""
    encoded = scrypt_encoding("s3cret", b"0123456789abcdef", n=n, r=r, p=p, dklen=32)
    assert verify_password("s3cret", encoded) is False


def test_verify_password_returns_false_for_any_malformed_encoding(stored: str) -> None:
    """A corrupt, truncated, foreign or costly stored hash yields False, never an exception."""
    for encoded in malformed_encodings(stored):
        assert verify_password("correct horse battery staple", encoded) is False, encoded


# --- tokens: round trips -----------------------------------------------------------------------


def test_read_token_returns_the_claims_that_were_issued() -> None:
    """A fresh token reads back as exactly the claims it was issued with."""
    issued = claims(username="shop-7", role="platform", platform="ONMARKET")
    assert read_token(issue_token(issued, SECRET), SECRET, NOW) == issued


def test_token_payload_has_the_documented_shape() -> None:
    """The payload is unpadded base64url JSON with sub, role, platform, exp in ms, and v=1."""
    token = issue_token(claims(), SECRET)
    payload_part, signature_part = token.split(".")
    assert "=" not in token
    payload = json.loads(base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4)))
    assert payload == valid_payload()
    mac = hmac.digest(SECRET, payload_part.encode("ascii"), "sha256")
    assert signature_part == b64url(mac)


def test_read_token_returns_expiry_in_utc_floored_to_the_millisecond() -> None:
    """Any aware expiry comes back in UTC, at millisecond precision, never later than asked."""
    plus_five = timezone(timedelta(hours=5))
    asked = datetime(2025, 6, 1, 18, 30, 0, 123_999, tzinfo=plus_five)
    read = read_token(issue_token(claims(expires_at=asked), SECRET), SECRET, NOW)
    assert read.expires_at == datetime(2025, 6, 1, 13, 30, 0, 123_000, tzinfo=UTC)
    assert read.expires_at.tzinfo is UTC


def test_issue_token_rejects_a_naive_expiry() -> None:
    """A naive expires_at is ambiguous, so issuing refuses it with ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_token(claims(expires_at=datetime(2030, 1, 1)), SECRET)


def test_read_token_rejects_a_naive_now() -> None:
    """Comparing against a naive clock is a caller bug, reported as ValueError."""
    token = issue_token(claims(), SECRET)
    with pytest.raises(ValueError, match="timezone-aware"):
        read_token(token, SECRET, datetime(2025, 6, 1))


def test_an_empty_secret_is_refused() -> None:
    """An empty HMAC key would make tokens forgeable, so both directions refuse it."""
    with pytest.raises(ValueError, match="secret"):
        issue_token(claims(), b"")
    with pytest.raises(ValueError, match="secret"):
        read_token(issue_token(claims(), SECRET), b"", NOW)


# --- tokens: rejection -------------------------------------------------------------------------


def test_a_token_with_a_tampered_payload_is_rejected() -> None:
    """Swapping in another payload under the original signature fails the signature check."""
    token = issue_token(claims(role="buyer"), SECRET)
    forged = issue_token(claims(role="admin"), OTHER_SECRET)
    with pytest.raises(TokenError, match="signature"):
        read_token(forged.split(".")[0] + "." + token.split(".")[1], SECRET, NOW)


def test_a_token_with_a_tampered_signature_is_rejected() -> None:
    """Changing a character of the signature fails the signature check."""
    token = issue_token(claims(), SECRET)
    index = token.index(".") + 1
    tampered = replace_at(token, index, "B" if token[index] == "A" else "A")
    with pytest.raises(TokenError, match="signature"):
        read_token(tampered, SECRET, NOW)


def test_a_token_signed_with_another_secret_is_rejected() -> None:
    """A well-formed token from a different key is a bad signature."""
    with pytest.raises(TokenError, match="signature"):
        read_token(issue_token(claims(), OTHER_SECRET), SECRET, NOW)


def test_a_signature_with_different_unused_base64_bits_is_rejected() -> None:
    """Only the canonical spelling of the MAC is accepted, so a token has one valid form.

    43 base64 characters hold 258 bits for a 256-bit MAC; the last character's two spare bits
    must be zero, and a variant setting them decodes to the same MAC but is still refused.
    """
    payload_part, signature_part = issue_token(claims(), SECRET).split(".")
    with pytest.raises(TokenError, match="signature"):
        read_token(payload_part + "." + non_canonical(signature_part), SECRET, NOW)


@pytest.mark.parametrize(
    "after", [timedelta(0), timedelta(milliseconds=1), timedelta(days=365)], ids=str
)
def test_a_token_is_expired_from_its_expiry_instant_on(after: timedelta) -> None:
    """At expires_at and any time after it, reading fails as expired."""
    token = issue_token(claims(expires_at=LATER), SECRET)
    with pytest.raises(TokenError, match="expired"):
        read_token(token, SECRET, LATER + after)


def test_a_token_is_valid_until_the_millisecond_before_expiry() -> None:
    """One millisecond before expires_at the token still reads."""
    token = issue_token(claims(expires_at=LATER), SECRET)
    assert read_token(token, SECRET, LATER - timedelta(milliseconds=1)).expires_at == LATER


def test_expiry_is_checked_after_the_signature() -> None:
    """An expired token from another key is reported as a bad signature, not as expired."""
    token = issue_token(claims(expires_at=NOW), OTHER_SECRET)
    with pytest.raises(TokenError, match="signature"):
        read_token(token, SECRET, LATER)


@pytest.mark.parametrize(
    "payload",
    [
        valid_payload(v=2),
        valid_payload(v=0),
        valid_payload(v="1"),
        valid_payload(v=1.0),
        valid_payload(v=True),
        valid_payload(v=None),
        {k: v for k, v in valid_payload().items() if k != "v"},
        {"v": 2, "something": "else"},
    ],
    ids=["2", "0", "str", "float", "bool", "null", "missing", "v2-shape"],
)
def test_a_token_with_another_version_is_rejected(payload: dict[str, object]) -> None:
    """Only v=1 (an integer, not true or 1.0) is understood; other versions are refused."""
    with pytest.raises(TokenError, match="version"):
        read_token(sign_payload(payload), SECRET, NOW)


def test_version_is_checked_before_expiry() -> None:
    """An expired token of an unknown version is reported as a version problem."""
    token = sign_payload(valid_payload(v=2, exp=0))
    with pytest.raises(TokenError, match="version"):
        read_token(token, SECRET, NOW)


GARBAGE_TOKENS = [
    "",
    ".",
    "abc",
    "abc.",
    ".abc",
    "a.b.c",
    "!!!!.????",
    "abc=.def",
    "a+b/.c",
    "éé.éé",
    "abc.\ud800",
    " " + sign_payload(valid_payload()),
    sign_payload(valid_payload()) + "\n",
    sign_payload(valid_payload()) + ".",
]


@pytest.mark.parametrize("token", GARBAGE_TOKENS)
def test_a_token_that_is_not_two_base64url_parts_is_rejected(token: str) -> None:
    """Anything but 'base64url.base64url' is a TokenError, whatever its characters."""
    with pytest.raises(TokenError):
        read_token(token, SECRET, NOW)


def non_canonical(encoded: str) -> str:
    """The same bytes spelled with a spare low bit of the last base64 character set."""
    assert len(encoded) % 4 in (2, 3), "needs spare bits in the last character"
    spelled = encoded[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(encoded[-1]) | 1]
    padding = "=" * (-len(encoded) % 4)
    assert base64.urlsafe_b64decode(spelled + padding) == base64.urlsafe_b64decode(
        encoded + padding
    )
    assert spelled != encoded
    return spelled


SIGNED_GARBAGE = {
    "payload-one-char-too-long": sign_raw(b64url(b'{"sub":1}') + "A"),
    # The username's length leaves spare bits at the end of the encoded payload.
    "payload-non-canonical-base64": sign_raw(
        non_canonical(b64url(json.dumps(valid_payload(sub="alicex")).encode()))
    ),
    "payload-not-utf8": sign_raw(b64url(b"\xff\xfe{}")),
    "payload-not-json": sign_raw(b64url(b"not json")),
    "payload-empty": sign_raw(""),
    "payload-nul-byte": sign_raw("AA"),
    "payload-json-list": sign_payload([1, 2]),
    "payload-json-string": sign_payload("sub"),
    "payload-json-null": sign_payload(None),
    "payload-json-number": sign_payload(1),
    "payload-nan-exp": sign_raw(b64url(b'{"sub":"a","role":"b","platform":null,"exp":NaN,"v":1}')),
    "payload-huge-int": sign_raw(b64url(b'{"v":1,"exp":' + b"9" * 5000 + b"}")),
    "payload-deeply-nested": sign_raw(b64url(b"[" * 100_000 + b"]" * 100_000)),
    "missing-sub": sign_payload({k: v for k, v in valid_payload().items() if k != "sub"}),
    "missing-exp": sign_payload({k: v for k, v in valid_payload().items() if k != "exp"}),
    "missing-platform": sign_payload({k: v for k, v in valid_payload().items() if k != "platform"}),
    "unknown-key": sign_payload(valid_payload(admin=True)),
    "sub-int": sign_payload(valid_payload(sub=42)),
    "sub-null": sign_payload(valid_payload(sub=None)),
    "role-list": sign_payload(valid_payload(role=["admin"])),
    "platform-int": sign_payload(valid_payload(platform=1)),
    "platform-bool": sign_payload(valid_payload(platform=False)),
    "exp-string": sign_payload(valid_payload(exp=str(valid_payload()["exp"]))),
    "exp-bool": sign_payload(valid_payload(exp=True)),
    "exp-float": sign_payload(valid_payload(exp=1.8e12)),
    "exp-null": sign_payload(valid_payload(exp=None)),
    "exp-past-year-9999": sign_payload(valid_payload(exp=10**16)),
    "exp-overflowing-timedelta": sign_payload(valid_payload(exp=10**30)),
    "exp-before-year-1": sign_payload(valid_payload(exp=-(10**16))),
}


@pytest.mark.parametrize("token", SIGNED_GARBAGE.values(), ids=SIGNED_GARBAGE.keys())
def test_a_correctly_signed_but_malformed_payload_is_rejected(token: str) -> None:
    """Even under a valid signature, a payload of the wrong shape or types is a TokenError."""
    with pytest.raises(TokenError, match="malformed"):
        read_token(token, SECRET, NOW)


def test_token_errors_do_not_quote_the_token() -> None:
    """Error messages say what went wrong without repeating the token or its parts."""
    token = issue_token(claims(username="alice-the-buyer"), SECRET)
    for candidate, now in [(token, LATER), (token + "x", NOW), (token[:-1], NOW)]:
        with pytest.raises(TokenError) as caught:
            read_token(candidate, SECRET, now)
        message = str(caught.value)
        assert all(part not in message for part in candidate.split("."))
        assert "alice" not in message


# --- tokens: properties ------------------------------------------------------------------------

expiries = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
any_claims = st.builds(
    TokenClaims,
    username=st.text(),
    role=st.one_of(st.sampled_from(ROLES), st.text()),
    platform=st.one_of(st.sampled_from(PLATFORMS), st.text()),
    expires_at=expiries,
)


@given(issued=any_claims)
def test_any_claims_round_trip_through_a_token(issued: TokenClaims) -> None:
    """Arbitrary usernames, roles and platforms read back unchanged just before expiry."""
    token = issue_token(issued, SECRET)
    assert read_token(token, SECRET, issued.expires_at - timedelta(milliseconds=1)) == issued


@given(
    issued=any_claims,
    data=st.data(),
)
def test_changing_any_single_character_of_a_token_makes_it_unreadable(
    issued: TokenClaims, data: st.DataObject
) -> None:
    """Every one-character change to a token, anywhere and to anything, raises TokenError.

    No "decodes to the same bytes" escape is needed: a changed payload character changes the
    signed text, and the signature is compared in its canonical encoded form, so spare base64
    bits in its last character are not free either.
    """
    token = issue_token(issued, SECRET)
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="index")
    char = data.draw(
        st.one_of(st.sampled_from(B64URL_ALPHABET + ".=+/"), st.characters()).filter(
            lambda candidate: candidate != token[index]
        ),
        label="replacement",
    )
    with pytest.raises(TokenError):
        read_token(replace_at(token, index, char), SECRET, issued.expires_at - timedelta(days=1))


def test_every_single_character_substitution_of_a_token_is_rejected() -> None:
    """Exhaustively: each position replaced by each other base64url character or '.' fails."""
    token = issue_token(claims(username="bob", role="platform", platform="ONTICKET"), SECRET)
    for index, original in enumerate(token):
        for char in B64URL_ALPHABET + ".":
            if char != original:
                with pytest.raises(TokenError):
                    read_token(replace_at(token, index, char), SECRET, NOW)


# --- Authorization headers ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_parse_bearer_returns_the_token_for_any_scheme_case(scheme: str) -> None:
    """The scheme is case-insensitive; the token is returned as sent."""
    token = issue_token(claims(), SECRET)
    assert parse_bearer(f"{scheme} {token}") == token


def test_parse_bearer_accepts_any_rfc6750_token() -> None:
    """Tokens from other issuers (base64 with '+', '/', '~' and padding) pass through."""
    assert parse_bearer("Bearer a-b.c_d~e+f/g==") == "a-b.c_d~e+f/g=="


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearerabc",
        "Bearer  abc",
        "Bearer abc ",
        "Bearer abc def",
        "Bearer\tabc",
        " Bearer abc",
        "Basic abc",
        "Token abc",
        "Bearer: abc",
        "Bearer =abc",
        "Bearer abc\n",
        "Bearer abc\x00",
        "Bearer ab\u00e9",
        "Beare\u0280 abc",
    ],
)
def test_parse_bearer_rejects_a_missing_or_malformed_header(header: str | None) -> None:
    """Anything but 'Bearer', one space and a non-empty token is a CredentialsError."""
    with pytest.raises(CredentialsError):
        parse_bearer(header)


def basic(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode('ascii')}"


def test_parse_basic_returns_username_and_password() -> None:
    """A well-formed Basic header decodes to its user and password."""
    assert parse_basic(basic(b"alice:s3cret")) == ("alice", "s3cret")


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
def test_parse_basic_accepts_the_scheme_in_any_case(scheme: str) -> None:
    """'basic' in lower (or any) case is the same scheme."""
    assert parse_basic(basic(b"alice:s3cret", scheme)) == ("alice", "s3cret")


def test_parse_basic_keeps_colons_in_the_password() -> None:
    """The user ends at the first ':'; later ones belong to the password."""
    assert parse_basic(basic(b"alice:pa:ss::word:")) == ("alice", "pa:ss::word:")


def test_parse_basic_allows_an_empty_password_and_utf8_text() -> None:
    """Empty passwords and non-ASCII UTF-8 survive decoding."""
    assert parse_basic(basic(b"alice:")) == ("alice", "")
    assert parse_basic(basic("jos\u00e9:p\u00e4ss".encode())) == ("jos\u00e9", "p\u00e4ss")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Basicabc",
        "Basic  " + basic(b"alice:pw").split(" ")[1],
        "Bearer " + basic(b"alice:pw").split(" ")[1],
        "Digest " + basic(b"alice:pw").split(" ")[1],
        "Basic YWxpY2U6cHc",
        "Basic YWxpY2U6cHc==",
        "Basic YWxp Y2U6cHc=",
        "Basic YWxpY2U6cHc=\n",
        "Basic YWxpY2U6cHc=!",
        "Basic YWxpY2U6-_c=",
        "Basic \u00e9\u00e9\u00e9\u00e9",
        basic(b"alice\xff:pw"),
        basic(b"alice:\xc3("),
        basic(b"alice"),
        basic(b""),
    ],
    ids=lambda header: repr(header)[:40],
)
def test_parse_basic_rejects_a_missing_or_malformed_header(header: str | None) -> None:
    """Wrong scheme, spacing, base64, UTF-8, or no ':' is a CredentialsError."""
    with pytest.raises(CredentialsError):
        parse_basic(header)


def test_basic_errors_carry_neither_the_password_nor_its_bytes() -> None:
    """A failed decode leaves no trace of the credentials in the message or exception chain."""
    with pytest.raises(CredentialsError) as caught:
        parse_basic(basic(b"alice:hunter2\xff"))
    assert "hunter2" not in str(caught.value)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
