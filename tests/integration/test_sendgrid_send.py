"""The SendGrid sender with the real ``sendgrid`` client against the double on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from python_http_client.exceptions import BadRequestsError
from sendgrid import SendGridAPIClient

from flows.email.message import EmailProviderError, OutgoingBatch, Recipient
from flows.email.sendgrid import RetryPolicy, SendGridSender, mail_request, provider_errors
from tests.sendgrid_double import Fault, SendGridDouble

KEY = "SG." + "Kq3v9_xZ-a7B1c2D3e4F5g" + "." + "h6I7j8K9l0M1n2O3p4Q5r6S7t8U9v0W1x2Y3z4A5b6C"


def make_batch(track: str, start: int, count: int, **changes: object) -> OutgoingBatch:
    recipients = tuple(
        Recipient(
            message_key=f"{track}-{n}",
            lead_id=f"lead-{n}",
            to_email=f"lead{n}@example.com",
            to_name=f"Lead {n}",
            subject=f"Hello Lead {n}",
            substitutions={"-lf_first_name-": f"Lead{n}"},
            unsubscribe_url=f"https://leadflow.example/u?key={track}-{n}",
        )
        for n in range(start, start + count)
    )
    values: dict[str, object] = {
        "track": track,
        "step": 1,
        "from_email": "LeadFlow <hello@leadflow.example>",
        "reply_to": None,
        "html": "<p>Hi -lf_first_name-</p>",
        "text": "Hi -lf_first_name-",
        "unsubscribe_group": 11,
        "categories": ("nurture", track),
        "recipients": recipients,
    } | changes
    return OutgoingBatch(**values)  # type: ignore[arg-type]


@pytest.fixture
def double() -> Iterator[SendGridDouble]:
    with SendGridDouble() as running:
        yield running


class Sleeps(list[float]):
    """Records the waits instead of sleeping them: the double answers at once anyway."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def sender(double: SendGridDouble, sleeps: Sleeps) -> SendGridSender:
    return SendGridSender(SecretStr(KEY), host=double.url, sleep=sleeps)


def test_a_batch_is_one_request_with_a_personalization_each(
    double: SendGridDouble, sender: SendGridSender
) -> None:
    batch = make_batch("welcome", 1, 3)
    sender.check()
    results = sender.send(batch)
    [accepted] = double.accepted
    assert accepted.body == mail_request(batch)
    assert [(r.message_key, r.status, r.error) for r in results] == [
        ("welcome-1", "sent", None),
        ("welcome-2", "sent", None),
        ("welcome-3", "sent", None),
    ]
    assert {r.provider_message_id for r in results} == {accepted.message_id}
    assert double.accepted_messages() == [
        ("welcome-1", "lead1@example.com"),
        ("welcome-2", "lead2@example.com"),
        ("welcome-3", "lead3@example.com"),
    ]


def test_a_thousand_recipients_go_in_one_request(
    double: SendGridDouble, sender: SendGridSender
) -> None:
    results = sender.send(make_batch("welcome", 0, 1000))
    assert {r.status for r in results} == {"sent"}
    assert double.attempts == 1
    assert len(double.accepted_messages()) == 1000


def test_sandbox_mode_is_validated_and_delivers_nothing(double: SendGridDouble) -> None:
    sender = SendGridSender(SecretStr(KEY), host=double.url, sandbox=True)
    results = sender.send(make_batch("welcome", 1, 2))
    assert sender.provider == "sendgrid-sandbox"
    assert [r.status for r in results] == ["sent", "sent"]
    assert double.requests[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_429_then_sent(double: SendGridDouble, sender: SendGridSender, sleeps: Sleeps) -> None:
    double.fail_next(Fault.rate_limited(retry_after=2))
    results = sender.send(make_batch("welcome", 1, 2))
    assert [r.status for r in results] == ["sent", "sent"]
    assert sleeps == [2]
    assert double.attempts == 2
    assert len(double.accepted) == 1


def test_a_long_rate_limit_fails_the_batch_for_this_run(
    double: SendGridDouble, sender: SendGridSender, sleeps: Sleeps
) -> None:
    double.fail_next(Fault.rate_limited(retry_after=86400))
    results = sender.send(make_batch("welcome", 1, 2))
    assert [r.status for r in results] == ["failed", "failed"]
    assert "LEADFLOW_SENDGRID_MAX_WAIT_SECONDS" in (results[0].error or "")
    assert sleeps == []
    assert double.accepted == []


def test_500s_then_sent(double: SendGridDouble, sender: SendGridSender, sleeps: Sleeps) -> None:
    double.fail_next(Fault.server_error(500), times=2)
    double.fail_next(Fault.server_error(503))
    results = sender.send(make_batch("welcome", 1, 2))
    assert [r.status for r in results] == ["sent", "sent"]
    assert len(sleeps) == 3
    assert sleeps[2] > sleeps[0]  # backing off
    assert double.attempts == 4


def test_a_dropped_connection_then_sent(
    double: SendGridDouble, sender: SendGridSender, sleeps: Sleeps
) -> None:
    double.fail_next(Fault.dropped())
    results = sender.send(make_batch("welcome", 1, 2))
    assert [r.status for r in results] == ["sent", "sent"]
    assert len(sleeps) == 1
    assert double.accepted_messages() == [
        ("welcome-1", "lead1@example.com"),
        ("welcome-2", "lead2@example.com"),
    ]


def test_server_errors_past_the_retry_time_fail_the_batch(double: SendGridDouble) -> None:
    double.fail_fraction(Fault.server_error(502), 1.0)
    sender = SendGridSender(
        SecretStr(KEY),
        host=double.url,
        policy=RetryPolicy(retry_seconds=0.5, first_backoff_seconds=0.05),
    )
    results = sender.send(make_batch("welcome", 1, 2))
    assert [r.status for r in results] == ["failed", "failed"]
    assert "SendGrid answered 502" in (results[0].error or "")
    assert 2 <= double.attempts <= 12


def test_a_400_fails_that_batch_and_the_others_go(
    double: SendGridDouble, sender: SendGridSender
) -> None:
    first, second, third = (make_batch(t, 1, 2) for t in ("welcome", "recycled", "lost"))
    assert {r.status for r in sender.send(first)} == {"sent"}
    double.fail_next(Fault.bad_request("The content value must be a string"))
    refused = sender.send(second)
    assert {r.status for r in sender.send(third)} == {"sent"}
    assert [(r.status, r.provider_message_id) for r in refused] == [("failed", None)] * 2
    assert (
        refused[0].error == "SendGrid refused the batch (400): The content value must be a string"
    )
    assert [key for key, _ in double.accepted_messages()] == [
        "welcome-1",
        "welcome-2",
        "lost-1",
        "lost-2",
    ]


def test_a_refused_key_stops_the_send(sleeps: Sleeps) -> None:
    with SendGridDouble(api_key=KEY.replace("K", "k")) as double:
        sender = SendGridSender(SecretStr(KEY), host=double.url, sleep=sleeps)
        with pytest.raises(
            EmailProviderError, match=r"refused the request \(401.*SENDGRID_API_KEY"
        ):
            sender.send(make_batch("welcome", 1, 2))
        with pytest.raises(EmailProviderError, match="revoked or mistyped"):
            sender.check()
        assert double.accepted == []


def test_check_wants_the_mail_send_permission() -> None:
    with (
        SendGridDouble(scopes=("marketing.read",)) as double,
        pytest.raises(EmailProviderError, match="no Mail Send permission"),
    ):
        SendGridSender(SecretStr(KEY), host=double.url).check()


def test_check_names_a_host_that_does_not_answer() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    sender = SendGridSender(SecretStr(KEY), host=f"http://127.0.0.1:{port}")
    with pytest.raises(EmailProviderError, match=f"LEADFLOW_SENDGRID_HOST=http://127.0.0.1:{port}"):
        sender.check()


def test_the_key_is_not_logged(
    double: SendGridDouble, sender: SendGridSender, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        double.fail_next(Fault.server_error(500))
        sender.check()
        sender.send(make_batch("welcome", 1, 2))
    assert "mail/send" in caplog.text  # the client did log its requests
    assert KEY not in caplog.text


class TestTheDoubleValidatesLikeSendGrid:
    """Requests the sender never builds, sent with the real client to the double."""

    def post(self, double: SendGridDouble, body: dict[str, object]) -> str:
        client = SendGridAPIClient(KEY, host=double.url)
        with pytest.raises(BadRequestsError) as refused:
            client.send(body)
        assert double.accepted == []
        return provider_errors(refused.value)

    def test_an_address_twice(self, double: SendGridDouble) -> None:
        body = mail_request(make_batch("welcome", 1, 3))
        body["personalizations"][2]["to"][0]["email"] = "LEAD1@example.com"
        assert "first duplicate instance of [LEAD1@example.com]" in self.post(double, body)

    def test_more_than_a_thousand_personalizations(self, double: SendGridDouble) -> None:
        body = mail_request(make_batch("welcome", 0, 1000))
        body["personalizations"].append({"to": [{"email": "one-more@example.com"}], "subject": "x"})
        errors = self.post(double, body)
        assert "at most 1000" in errors
        assert "less than or equal to 1000" in errors

    def test_no_subject(self, double: SendGridDouble) -> None:
        body = mail_request(make_batch("welcome", 1, 1))
        del body["personalizations"][0]["subject"]
        assert "The subject is required" in self.post(double, body)

    def test_no_content_and_no_from(self, double: SendGridDouble) -> None:
        body = mail_request(make_batch("welcome", 1, 1))
        del body["content"], body["from"]
        errors = self.post(double, body)
        assert "content parameter is required" in errors
        assert "from object must be provided" in errors

    def test_custom_args_of_10000_bytes(self, double: SendGridDouble) -> None:
        body = mail_request(make_batch("welcome", 1, 1))
        body["personalizations"][0]["custom_args"]["note"] = "x" * 10_000
        assert "under 10000 bytes" in self.post(double, body)

    def test_a_key_that_is_not_a_bearer_sendgrid_key(self, double: SendGridDouble) -> None:
        with pytest.raises(EmailProviderError, match="401"):
            SendGridSender(SecretStr("not-a-key"), host=double.url).send(
                make_batch("welcome", 1, 1)
            )
