"""The SendGrid double's request checks and its count-only mode, as plain functions."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.sendgrid_double import (
    MAX_CUSTOM_ARGS_BYTES,
    STATS_PATH,
    SendGridDouble,
    validate_mail_send,
)


def body(*personalizations: dict[str, Any], **request: Any) -> dict[str, Any]:
    return {
        "from": {"email": "hello@leadflow.example"},
        "content": [{"type": "text/plain", "value": "Hi"}],
        "personalizations": list(personalizations),
        **request,
    }


def personalization(number: int, **fields: Any) -> dict[str, Any]:
    return {"to": [{"email": f"lead{number}@example.com"}], "subject": "Hi", **fields}


def args_of(size: int, character: str = "x") -> dict[str, str]:
    """Custom args whose JSON is exactly ``size`` bytes, mostly of ``character``."""
    overhead = len(json.dumps({"k": ""}))
    each = len(json.dumps(character)) - 2  # é is \u00e9 (6 bytes), 😀 two of them (12)
    count, rest = divmod(size - overhead, each)
    return {"k": character * count + "x" * rest}


@pytest.mark.parametrize("character", ["x", "é", "😀"])
@pytest.mark.parametrize(
    ("size", "refused"), [(MAX_CUSTOM_ARGS_BYTES - 1, False), (MAX_CUSTOM_ARGS_BYTES, True)]
)
def test_custom_args_must_be_under_10000_bytes_as_json(
    size: int, refused: bool, character: str
) -> None:
    custom_args = args_of(size, character)
    assert len(json.dumps(custom_args)) == size
    errors = validate_mail_send(body(personalization(1, custom_args=custom_args)))
    assert ("personalizations.0.custom_args" in [where for _, where in errors]) is refused


@pytest.mark.parametrize(("pairs", "refused"), [(312, False), (313, True)])
def test_many_short_custom_args_at_the_limit(pairs: int, refused: bool) -> None:
    # Each pair of one-emoji key and value is 32 bytes of JSON, the most the size bound allows
    # it: the short cut that skips the exact size must still see the limit.
    custom_args = {chr(0x1F600 + n): "😀" for n in range(pairs)}
    assert len(json.dumps(custom_args)) == 32 * pairs
    errors = validate_mail_send(body(personalization(1, custom_args=custom_args)))
    assert ("personalizations.0.custom_args" in [where for _, where in errors]) is refused


def test_request_custom_args_count_toward_each_personalization() -> None:
    half = args_of(MAX_CUSTOM_ARGS_BYTES // 2 + 10)
    errors = validate_mail_send(
        body(personalization(1, custom_args={"j": half["k"]}), custom_args=half)
    )
    assert [where for _, where in errors] == ["personalizations.0.custom_args"]


def test_errors_come_request_wide_first_then_by_personalization() -> None:
    many = [personalization(n) for n in range(1001)]
    many[3] = personalization(2, subject="")
    errors = validate_mail_send(body(*many))
    assert [where for _, where in errors] == [
        "personalizations",
        "personalizations",
        "personalizations.3.to",
        "subject",
    ]
    assert "duplicate instance of [lead2@example.com]" in errors[2][0]


def test_count_only_keeps_no_body_and_counts() -> None:
    with SendGridDouble(count_only=True) as double:
        for size in (2, 3):
            double.accept(body(*(personalization(n) for n in range(size))), sandbox=False)
        with urllib.request.urlopen(double.url + STATS_PATH) as answer:
            stats = json.loads(answer.read())
    assert double.requests == []
    assert stats["accepted_requests"] == 2 and stats["accepted_personalizations"] == 5
    assert stats["cpu_seconds"] > 0
