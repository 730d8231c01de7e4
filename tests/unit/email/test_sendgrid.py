"""The SendGrid sender's logic as plain functions: the request body, key checks, retries."""

from __future__ import annotations

import random
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, parseaddr

import pytest
from pydantic import SecretStr
from python_http_client.exceptions import HTTPError
from sendgrid.helpers.mail import (
    Asm,
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    Personalization,
    ReplyTo,
    SandBoxMode,
    Substitution,
    To,
)
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from flows.email.message import EmailProviderError, OutgoingBatch, Recipient
from flows.email.sendgrid import (
    BatchNotSent,
    RetryPolicy,
    SendGridSender,
    backoff_seconds,
    batch_problem,
    is_api_key,
    mail_request,
    post_with_retries,
    provider_errors,
    rate_limit_wait,
)

VALID_KEY = "SG." + "A1b2-C3d_E4f5G6h7I8j9K" + "." + "x" * 40 + "Y-_"
NOW = 1_800_000_000.0


def recipient(number: int, **changes: object) -> Recipient:
    base = Recipient(
        message_key=f"key{number}",
        lead_id=f"lead{number}",
        to_email=f"lead{number}@example.com",
        to_name=f"Lead {number}",
        subject=f"Still thinking it over, Lead {number}?",
        substitutions={"-lf_first_name-": f"Lead{number}", "-lf_company-": "A &amp; B"},
        unsubscribe_url=f"https://leadflow.example/unsubscribe?key=key{number}",
        custom_args={"track": "recycled_not_ready"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def batch(*recipients: Recipient, **changes: object) -> OutgoingBatch:
    base = OutgoingBatch(
        track="recycled_not_ready",
        step=2,
        from_email="LeadFlow Demo <hello@leadflow.example>",
        reply_to="Rita Rep <rita@leadflow.example>",
        html="<p>Hi -lf_first_name- at -lf_company-</p>",
        text="Hi -lf_first_name- at -lf_company-",
        unsubscribe_group=4242,
        categories=("nurture", "recycled_not_ready", "step-2"),
        recipients=recipients or (recipient(1), recipient(2)),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def library_mail_request(batch: OutgoingBatch, *, sandbox: bool = False) -> dict[str, object]:
    """The request as the ``sendgrid`` helper classes build it: what ``mail_request`` must equal."""
    name, address = parseaddr(batch.from_email)
    mail = Mail(from_email=From(address, name or None))
    if batch.reply_to:
        reply_name, reply_address = parseaddr(batch.reply_to)
        mail.reply_to = ReplyTo(reply_address, reply_name or None)
    mail.add_content(Content("text/plain", batch.text))
    mail.add_content(Content("text/html", batch.html))
    # add_category and add_personalization insert at the front by default.
    for category in reversed(batch.categories):
        mail.add_category(Category(category))
    if batch.unsubscribe_group is not None:
        mail.asm = Asm(batch.unsubscribe_group)
    mail.add_custom_arg(CustomArg("track", batch.track))
    mail.add_custom_arg(CustomArg("step", str(batch.step)))
    if batch.is_test:
        mail.add_custom_arg(CustomArg("is_test", "true"))
    if sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    for index, r in enumerate(batch.recipients):
        personalization = Personalization()
        personalization.add_to(To(r.to_email, r.to_name or None))
        personalization.subject = r.subject
        for tag, value in r.substitutions.items():
            personalization.add_substitution(Substitution(tag, value))
        custom_args = {**r.custom_args, "message_key": r.message_key, "lead_id": r.lead_id}
        for key, value in custom_args.items():
            personalization.add_custom_arg(CustomArg(key, str(value)))
        personalization.add_header(Header("List-Unsubscribe", f"<{r.unsubscribe_url}>"))
        personalization.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        mail.add_personalization(personalization, index=index)
    body: dict[str, object] = mail.get()
    return body


class TestMailRequest:
    @pytest.mark.parametrize(
        ("changes", "sandbox"),
        [
            ({}, False),
            ({"is_test": True}, True),
            ({"from_email": "hello@leadflow.example", "reply_to": None, "categories": ()}, False),
            ({"unsubscribe_group": None}, False),
        ],
    )
    def test_the_body_is_what_the_sendgrid_helpers_build(
        self, changes: dict[str, object], sandbox: bool
    ) -> None:
        recipients = (
            recipient(1),
            recipient(2, to_name="", substitutions={}),
            recipient(3, custom_args={"message_key": "forged", "source": "crm"}),
            recipient(4, to_name="Zoë O'Brien, PhD", subject="Ça va, Zoë? <b>&amp;</b>"),
        )
        built = batch(*recipients, **changes)
        body = mail_request(built, sandbox=sandbox)
        expected = library_mail_request(built, sandbox=sandbox)
        # Lists compare in order: personalizations and categories keep the batch's.
        assert body == expected

    @pytest.mark.parametrize("field", ["text", "html"])
    def test_content_beginning_with_an_api_key_is_refused_as_the_library_does(
        self, field: str
    ) -> None:
        leaked = batch(**{field: "SG.abc123.def456 is the key"})
        with pytest.raises(ApiKeyIncludedException):
            library_mail_request(leaked)
        with pytest.raises(ApiKeyIncludedException):
            mail_request(leaked)

    def test_an_api_key_further_in_passes_as_with_the_library(self) -> None:
        quoted = batch(text="Our promo code is SG.abc123.def456")
        assert mail_request(quoted) == library_mail_request(quoted)

    def test_request_level_fields(self) -> None:
        body = mail_request(batch())
        assert body["from"] == {"name": "LeadFlow Demo", "email": "hello@leadflow.example"}
        assert body["reply_to"] == {"name": "Rita Rep", "email": "rita@leadflow.example"}
        assert body["content"] == [
            {"type": "text/plain", "value": "Hi -lf_first_name- at -lf_company-"},
            {"type": "text/html", "value": "<p>Hi -lf_first_name- at -lf_company-</p>"},
        ]
        assert body["categories"] == ["nurture", "recycled_not_ready", "step-2"]
        assert body["asm"] == {"group_id": 4242}
        assert body["custom_args"] == {"track": "recycled_not_ready", "step": "2"}
        assert "mail_settings" not in body
        assert "subject" not in body  # every personalization has its own

    def test_one_personalization_per_recipient_in_order(self) -> None:
        recipients = tuple(recipient(n) for n in range(1, 6))
        body = mail_request(batch(*recipients))
        assert [p["to"][0]["email"] for p in body["personalizations"]] == [
            r.to_email for r in recipients
        ]

    def test_personalization_fields(self) -> None:
        first = mail_request(batch())["personalizations"][0]
        assert first == {
            "to": [{"name": "Lead 1", "email": "lead1@example.com"}],
            "subject": "Still thinking it over, Lead 1?",
            "substitutions": {"-lf_first_name-": "Lead1", "-lf_company-": "A &amp; B"},
            "custom_args": {
                "track": "recycled_not_ready",
                "message_key": "key1",
                "lead_id": "lead1",
            },
            "headers": {
                "List-Unsubscribe": "<https://leadflow.example/unsubscribe?key=key1>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        }

    def test_the_ledger_key_wins_over_a_custom_arg_of_the_same_name(self) -> None:
        body = mail_request(batch(recipient(1, custom_args={"message_key": "forged"})))
        assert body["personalizations"][0]["custom_args"]["message_key"] == "key1"

    def test_a_recipient_without_a_name_and_a_bare_sender(self) -> None:
        body = mail_request(
            batch(recipient(1, to_name=""), from_email="hello@leadflow.example", reply_to=None)
        )
        assert body["personalizations"][0]["to"] == [{"email": "lead1@example.com"}]
        assert body["from"] == {"email": "hello@leadflow.example"}
        assert "reply_to" not in body

    def test_sandbox_mode_and_test_sends(self) -> None:
        body = mail_request(batch(is_test=True), sandbox=True)
        assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
        assert body["custom_args"]["is_test"] == "true"


class TestBatchProblem:
    def test_a_good_batch(self) -> None:
        assert batch_problem(batch()) is None

    def test_no_unsubscribe_group_names_the_track_file(self) -> None:
        problem = batch_problem(batch(unsubscribe_group=None))
        assert problem is not None
        assert "unsubscribe_group: <group id>" in problem
        assert "templates/tracks/recycled_not_ready/track.yml" in problem

    def test_an_address_twice_whatever_its_case(self) -> None:
        twice = batch(recipient(1), recipient(2, to_email="LEAD1@example.com"))
        assert "LEAD1@example.com is in the batch twice" in (batch_problem(twice) or "")

    @pytest.mark.parametrize("size", [0, 1001])
    def test_sizes_sendgrid_refuses(self, size: int) -> None:
        recipients = tuple(recipient(n) for n in range(size))
        assert f"this one {size}" in (batch_problem(batch(recipients=recipients)) or "")

    def test_the_sender_fails_such_a_batch_without_calling_sendgrid(self) -> None:
        # Port 1 answers nothing: a request would fail with a different message.
        sender = SendGridSender(
            SecretStr(VALID_KEY), host="http://127.0.0.1:1", policy=RetryPolicy(retry_seconds=0)
        )
        results = sender.send(batch(unsubscribe_group=None))
        assert [r.status for r in results] == ["failed", "failed"]
        assert all("unsubscribe group" in (r.error or "") for r in results)


def test_content_the_client_takes_for_an_api_key_fails_the_batch() -> None:
    sender = SendGridSender(
        SecretStr(VALID_KEY), host="http://127.0.0.1:1", policy=RetryPolicy(retry_seconds=0)
    )
    results = sender.send(batch(text="SG.abc.def is our promo code"))
    assert {r.status for r in results} == {"failed"}
    assert "looks like a SendGrid API key" in (results[0].error or "")


class TestApiKey:
    def test_the_shape_of_a_key(self) -> None:
        assert is_api_key(VALID_KEY)
        assert len(VALID_KEY) == 69

    @pytest.mark.parametrize(
        "key",
        [
            "",
            VALID_KEY[:-1],
            VALID_KEY + "x",
            "sg" + VALID_KEY[2:],
            " " + VALID_KEY,
            VALID_KEY.replace("x", "+", 1),
            "SG.your-key-here",
        ],
    )
    def test_malformed_keys(self, key: str) -> None:
        assert not is_api_key(key)

    def test_check_refuses_a_malformed_key_before_any_request(self) -> None:
        secret = "SG.not-a-real-key-but-a-secret-anyway"
        sender = SendGridSender(SecretStr(secret), host="http://127.0.0.1:1")
        with pytest.raises(EmailProviderError) as refused:
            sender.check()
        message = str(refused.value)
        assert "SENDGRID_API_KEY" in message
        assert "SG.<22 characters>.<43 characters>" in message
        assert secret not in message

    def test_the_sender_does_not_show_its_key(self) -> None:
        sender = SendGridSender(SecretStr(VALID_KEY))
        assert VALID_KEY not in repr(sender) + repr(vars(sender).get("_api_key"))


def headers(**values: str) -> Message:
    message = Message()
    for name, value in values.items():
        message[name.replace("_", "-")] = value
    return message


class TestRateLimitWait:
    def test_retry_after_seconds(self) -> None:
        assert rate_limit_wait(headers(Retry_After="7"), NOW) == 7

    def test_retry_after_http_date(self) -> None:
        when = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
        assert rate_limit_wait(headers(Retry_After=when), NOW) == pytest.approx(30)

    def test_sendgrid_reset_epoch(self) -> None:
        assert rate_limit_wait(headers(X_RateLimit_Reset=f"{NOW + 12:.0f}"), NOW) == 12

    def test_retry_after_wins_over_reset(self) -> None:
        both = headers(Retry_After="3", X_RateLimit_Reset=f"{NOW + 12:.0f}")
        assert rate_limit_wait(both, NOW) == 3

    def test_a_reset_in_the_past_waits_nothing(self) -> None:
        assert rate_limit_wait(headers(X_RateLimit_Reset=f"{NOW - 5:.0f}"), NOW) == 0

    @pytest.mark.parametrize("found", [headers(), headers(Retry_After="soon"), None])
    def test_nothing_usable(self, found: Message | None) -> None:
        assert rate_limit_wait(found, NOW) is None


def http_error(status: int, body: bytes = b"", **header_values: str) -> HTTPError:
    """What python_http_client raises for an error answer."""
    return HTTPError(status, "reason", body, headers(**header_values))


class Accepted:
    status_code = 202
    body = b""
    headers = headers(X_Message_Id="abc")


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds

    def monotonic(self) -> float:
        return self.elapsed


def answers(*outcomes: Exception | None) -> Callable[[], Accepted]:
    """A post that raises each outcome in turn (None: accepted), then accepts."""
    pending: Iterator[Exception | None] = iter(outcomes)
    calls: list[int] = []

    def post() -> Accepted:
        calls.append(1)
        outcome = next(pending, None)
        if outcome is not None:
            raise outcome
        return Accepted()

    post.calls = calls  # type: ignore[attr-defined]
    return post


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def retry(post: Callable[[], Accepted], clock: FakeClock, policy: RetryPolicy) -> object:
    return post_with_retries(
        post,
        policy,
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=lambda: NOW + clock.elapsed,
        rng=random.Random(1),
    )


class TestRetries:
    def test_429_waits_as_told_then_sends(self, clock: FakeClock) -> None:
        post = answers(http_error(429, Retry_After="5"))
        assert isinstance(retry(post, clock, RetryPolicy()), Accepted)
        assert clock.sleeps == [5]

    def test_429_waits_until_the_rate_limit_resets(self, clock: FakeClock) -> None:
        post = answers(http_error(429, X_RateLimit_Reset=f"{NOW + 7:.0f}"))
        retry(post, clock, RetryPolicy())
        assert clock.sleeps == [7]

    def test_429_asking_for_a_day_fails_the_batch_at_once(self, clock: FakeClock) -> None:
        post = answers(http_error(429, Retry_After="86400"))
        with pytest.raises(BatchNotSent, match="LEADFLOW_SENDGRID_MAX_WAIT_SECONDS=60"):
            retry(post, clock, RetryPolicy(max_wait_seconds=60))
        assert clock.sleeps == []

    def test_429_without_a_wait_backs_off(self, clock: FakeClock) -> None:
        retry(answers(http_error(429)), clock, RetryPolicy(first_backoff_seconds=2))
        assert 1 <= clock.sleeps[0] <= 2

    def test_429_saying_now_still_backs_off(self, clock: FakeClock) -> None:
        retry(answers(http_error(429, Retry_After="0")), clock, RetryPolicy())
        assert 0.5 <= clock.sleeps[0] <= 1

    def test_5xx_backs_off_exponentially_then_sends(self, clock: FakeClock) -> None:
        post = answers(*(http_error(status) for status in (500, 502, 503, 504)))
        retry(post, clock, RetryPolicy(first_backoff_seconds=1, max_backoff_seconds=30))
        assert len(clock.sleeps) == 4
        for attempt, slept in enumerate(clock.sleeps):
            assert 2**attempt / 2 <= slept <= 2**attempt

    def test_5xx_for_ever_gives_up_within_the_retry_time(self, clock: FakeClock) -> None:
        post = answers(*(http_error(503) for _ in range(1000)))
        with pytest.raises(BatchNotSent) as gave_up:
            retry(post, clock, RetryPolicy(retry_seconds=120, max_backoff_seconds=30))
        assert clock.elapsed <= 120
        assert clock.elapsed > 120 - 30  # it used the time it had
        assert "SendGrid answered 503" in str(gave_up.value)
        assert "LEADFLOW_SENDGRID_RETRY_SECONDS=120" in str(gave_up.value)

    def test_a_lost_connection_is_retried(self, clock: FakeClock) -> None:
        post = answers(urllib.error.URLError(ConnectionRefusedError(111, "refused")))
        assert isinstance(retry(post, clock, RetryPolicy()), Accepted)
        assert len(clock.sleeps) == 1

    def test_400_fails_the_batch_with_sendgrids_message_without_retry(
        self, clock: FakeClock
    ) -> None:
        body = b'{"errors": [{"message": "Invalid email", "field": "personalizations.0.to"}]}'
        post = answers(http_error(400, body))
        with pytest.raises(BatchNotSent, match=r"\(400\): Invalid email \(field personalizations"):
            retry(post, clock, RetryPolicy())
        assert post.calls == [1]  # type: ignore[attr-defined]
        assert clock.sleeps == []

    @pytest.mark.parametrize("status", [401, 403])
    def test_a_refused_key_stops_everything(self, clock: FakeClock, status: int) -> None:
        body = b'{"errors": [{"message": "The provided authorization grant is invalid"}]}'
        with pytest.raises(
            EmailProviderError, match=r"grant is invalid.*SENDGRID_API_KEY.*LEADFLOW_EMAIL_FROM"
        ):
            retry(answers(http_error(status, body)), clock, RetryPolicy())
        assert clock.sleeps == []


class TestBackoffAndErrors:
    def test_backoff_is_capped(self) -> None:
        policy = RetryPolicy(first_backoff_seconds=1, max_backoff_seconds=30)
        rng = random.Random(3)
        assert all(15 <= backoff_seconds(attempt, policy, rng) <= 30 for attempt in range(5, 40))

    def test_provider_errors_joins_every_message(self) -> None:
        body = (
            b'{"errors": [{"message": "first", "field": "from"}, {"message": "second",'
            b' "field": null}]}'
        )
        assert provider_errors(http_error(400, body)) == "first (field from); second"

    def test_provider_errors_without_json(self) -> None:
        assert provider_errors(http_error(502, b"<html>bad gateway</html>")) == "502 reason"
