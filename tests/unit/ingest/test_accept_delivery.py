"""The ingest use cases with in-memory ports: what is queued, what is refused, and when."""

from datetime import UTC, datetime

import pytest

from functions.domain.ingest.accept import (
    BodyNotJson,
    DeliverySummary,
    SignatureRejected,
    VerificationRejected,
    accept_delivery,
    verify_subscription,
)
from functions.domain.ingest.ports import PublishFailed
from functions.domain.ingest.signature import sign
from functions.domain.whatsapp.credentials import CredentialsUnavailable, WhatsAppCredentials
from functions.domain.whatsapp.webhook import InvalidPayload
from tests.events import builders as b
from tests.fakes import FakeCredentials, FakePublisher, FakeStatusPublisher

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
CREDS = WhatsAppCredentials(app_secret="app-secret", verify_token="vt", access_token="at")


def accept(
    body: bytes, header: str | None, creds: FakeCredentials, publisher: FakePublisher
) -> DeliverySummary:
    return accept_delivery(body, header, credentials=creds, publisher=publisher, now=lambda: NOW)


def test_a_signed_delivery_queues_every_message_and_summarises_the_rest() -> None:
    document = b.webhook(
        b.change(messages=[b.message(), b.message("image")], statuses=[b.status("read")]),
        b.change(
            statuses=[b.status("failed", errors=[b.meta_error(131047)])],
            errors=[b.meta_error(130429)],
        ),
        b.change(field="message_template_status_update"),
        entries=2,
    )
    body = b.encode(document)
    publisher = FakePublisher()

    summary = accept(body, sign(body, "app-secret"), FakeCredentials(CREDS), publisher)

    assert [r.wamid for r in publisher.published] == [
        m["id"] for m in document["entry"][0]["changes"][0]["value"]["messages"]
    ]
    assert all(r.received_at == NOW for r in publisher.published)
    assert len(summary.queued) == 2
    assert summary.statuses == {"read": 1, "failed": 1}
    assert summary.delivery_failures == {"131047": 1}
    assert summary.webhook_errors == {"130429": 1}
    assert summary.ignored_fields == {"message_template_status_update": 1}
    assert [s.status for s in summary.failed_statuses] == ["failed"]


def test_message_level_errors_are_counted_too() -> None:
    body = b.fixture_bytes("unsupported")
    summary = accept(body, sign(body, "app-secret"), FakeCredentials(CREDS), FakePublisher())
    assert summary.webhook_errors == {"131051": 1}
    assert len(summary.queued) == 1  # kept: the consumer decides what to do with it


@pytest.mark.parametrize("header", [None, "", "sha256=" + "0" * 64])
def test_missing_or_wrong_signature_queues_nothing(header: str | None) -> None:
    publisher = FakePublisher()
    with pytest.raises(SignatureRejected):
        accept(b.fixture_bytes("text"), header, FakeCredentials(CREDS), publisher)
    assert publisher.published == []


def test_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(SignatureRejected):
        accept(b"not json", "sha256=00", FakeCredentials(CREDS), FakePublisher())


def test_a_signed_body_that_is_not_json_or_not_an_object_is_invalid() -> None:
    for body in (b"not json", b"[1,2]", b"\xff\xfe"):
        with pytest.raises(InvalidPayload):
            accept(body, sign(body, "app-secret"), FakeCredentials(CREDS), FakePublisher())
    with pytest.raises(BodyNotJson):
        accept(b"{", sign(b"{", "app-secret"), FakeCredentials(CREDS), FakePublisher())


def test_a_rotated_app_secret_is_picked_up_at_once() -> None:
    rotated = WhatsAppCredentials(app_secret="new-secret", verify_token="vt", access_token="at")
    creds = FakeCredentials(stored=rotated, cached=CREDS)
    body = b.fixture_bytes("text")

    summary = accept(body, sign(body, "new-secret"), creds, FakePublisher())

    assert len(summary.queued) == 1
    assert creds.cached == rotated


def test_a_refresh_that_is_rate_limited_leaves_the_signature_rejected() -> None:
    rotated = WhatsAppCredentials(app_secret="new-secret", verify_token="vt", access_token="at")
    creds = FakeCredentials(stored=rotated, cached=CREDS, refresh_allowed=False)
    body = b.fixture_bytes("text")
    with pytest.raises(SignatureRejected):
        accept(body, sign(body, "new-secret"), creds, FakePublisher())


def test_queue_and_secret_failures_propagate_for_a_5xx() -> None:
    body = b.fixture_bytes("text")
    with pytest.raises(PublishFailed):
        accept(
            body,
            sign(body, "app-secret"),
            FakeCredentials(CREDS),
            FakePublisher(fail_with="Throttled"),
        )
    with pytest.raises(CredentialsUnavailable):
        accept(
            body,
            sign(body, "app-secret"),
            FakeCredentials(CREDS, unavailable=True),
            FakePublisher(),
        )


def test_a_delivery_without_messages_never_touches_the_queue() -> None:
    body = b.fixture_bytes("status_delivered")
    publisher = FakePublisher(fail_with="QueueDoesNotExist")
    summary = accept(body, sign(body, "app-secret"), FakeCredentials(CREDS), publisher)
    assert summary.statuses == {"delivered": 1}


def test_subscription_handshake() -> None:
    creds = FakeCredentials(CREDS)
    assert verify_subscription("subscribe", "vt", "1158201444", creds) == "1158201444"
    for mode, token, challenge in [
        ("subscribe", "wrong", "1"),
        ("unsubscribe", "vt", "1"),
        (None, "vt", "1"),
        ("subscribe", None, "1"),
        ("subscribe", "vt", None),
    ]:
        with pytest.raises(VerificationRejected):
            verify_subscription(mode, token, challenge, creds)


def test_an_empty_configured_verify_token_matches_nothing() -> None:
    creds = FakeCredentials(WhatsAppCredentials(app_secret="a", verify_token="", access_token="t"))
    with pytest.raises(VerificationRejected):
        verify_subscription("subscribe", "", "1", creds)


def test_a_malformed_signature_header_does_not_cost_a_secret_refresh() -> None:
    creds = FakeCredentials(CREDS)
    for header in ("sha256=abc", "md5=" + "0" * 64, "garbage"):
        with pytest.raises(SignatureRejected, match="not of the form"):
            accept(b.fixture_bytes("text"), header, creds, FakePublisher())
    assert creds.reads == 0


def test_a_well_formed_wrong_signature_refreshes_once() -> None:
    creds = FakeCredentials(CREDS)
    with pytest.raises(SignatureRejected, match="does not match"):
        accept(b.fixture_bytes("text"), "sha256=" + "a" * 64, creds, FakePublisher())
    assert creds.reads == 2  # the cached read, then one forced refresh


def test_statuses_are_queued_when_a_status_queue_is_configured() -> None:
    body = b.encode(
        b.webhook(
            b.change(
                messages=[b.message()],
                statuses=[b.status("sent"), b.status("read"), {**b.status("read"), "id": ""}],
            )
        )
    )
    statuses = FakeStatusPublisher()

    summary = accept_delivery(
        body,
        sign(body, "app-secret"),
        credentials=FakeCredentials(CREDS),
        publisher=FakePublisher(),
        now=lambda: NOW,
        statuses=statuses,
    )

    assert [s.status for s in statuses.published] == ["sent", "read"]  # an id-less one is not
    assert all(s.received_at == NOW for s in statuses.published)
    assert summary.statuses_queued == 2
    assert summary.statuses == {"sent": 1, "read": 2}


def test_a_status_queue_that_refuses_fails_the_delivery_for_a_redelivery() -> None:
    body = b.fixture_bytes("status_failed")
    with pytest.raises(PublishFailed):
        accept_delivery(
            body,
            sign(body, "app-secret"),
            credentials=FakeCredentials(CREDS),
            publisher=FakePublisher(),
            now=lambda: NOW,
            statuses=FakeStatusPublisher(fail_with="Throttled"),
        )


def test_without_a_status_queue_statuses_are_only_counted() -> None:
    body = b.fixture_bytes("status_delivered")
    summary = accept(body, sign(body, "app-secret"), FakeCredentials(CREDS), FakePublisher())
    assert summary.statuses_queued == 0
    assert summary.statuses == {"delivered": 1}


def test_the_callers_deadline_reaches_the_publisher() -> None:
    body = b.encode(b.webhook(b.change(messages=[b.message()])))
    publisher = FakePublisher()

    accept_delivery(
        body,
        sign(body, "app-secret"),
        credentials=FakeCredentials(CREDS),
        publisher=publisher,
        now=lambda: NOW,
        remaining_seconds=lambda: 4.25,
    )

    assert publisher.deadlines == [4.25]
