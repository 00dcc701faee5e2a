"""X-Hub-Signature-256 over the raw bytes, including Meta's own captured delivery."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.ingest.signature import sign, signature_matches
from tests.events.builders import EVENTS

pytestmark = pytest.mark.unit

REAL = json.loads((EVENTS / "meta_signed_text.json").read_text())


def test_real_meta_delivery_is_accepted_byte_for_byte() -> None:
    body = REAL["body"].encode("utf-8")
    assert signature_matches(body, REAL["x_hub_signature_256"], REAL["app_secret"])


@pytest.mark.parametrize("position", [0, 1, 57, 200, -2, -1])
def test_real_meta_delivery_with_any_byte_changed_is_rejected(position: int) -> None:
    body = bytearray(REAL["body"].encode("utf-8"))
    body[position] ^= 0x01
    assert not signature_matches(bytes(body), REAL["x_hub_signature_256"], REAL["app_secret"])


def test_real_signature_under_another_secret_is_rejected() -> None:
    body = REAL["body"].encode("utf-8")
    assert not signature_matches(body, REAL["x_hub_signature_256"], REAL["app_secret"] + "x")


def test_escaped_and_raw_non_ascii_are_different_bytes_and_each_verifies_as_sent() -> None:
    text = "Olá, ¿qué tal? Ça va — 👍🏽 日本語"
    escaped = json.dumps({"body": text}).encode()  # \\uXXXX, as Meta sends it
    raw = json.dumps({"body": text}, ensure_ascii=False).encode("utf-8")
    assert escaped != raw
    for body in (escaped, raw):
        assert signature_matches(body, sign(body, "secret"), "secret")
    # Re-serialising parsed JSON would change the bytes and break the signature.
    assert not signature_matches(raw, sign(escaped, "secret"), "secret")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=0123",
        "0" * 64,
        "sha256=" + "0" * 64,
        "sha256=zz",
        "sha256=" + "é" * 64,
    ],
)
def test_missing_or_malformed_headers_never_match(header: str | None) -> None:
    assert not signature_matches(b"{}", header, "secret")


def test_uppercase_hex_and_surrounding_space_are_tolerated() -> None:
    body = b'{"a":1}'
    digest = sign(body, "secret").removeprefix("sha256=")
    assert signature_matches(body, f"  sha256={digest.upper()} ", "secret")
    assert signature_matches(body, f"SHA256={digest}", "secret")


def test_an_empty_app_secret_matches_nothing() -> None:
    assert not signature_matches(b"{}", sign(b"{}", ""), "")


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40))
def test_sign_then_verify_round_trips(body: bytes, secret: str) -> None:
    assert signature_matches(body, sign(body, secret), secret)


@given(body=st.binary(min_size=1, max_size=256), flip=st.integers(min_value=0, max_value=255))
def test_any_changed_body_is_rejected(body: bytes, flip: int) -> None:
    tampered = bytearray(body)
    tampered[flip % len(body)] ^= 0x80
    assert not signature_matches(bytes(tampered), sign(body, "k"), "k")
