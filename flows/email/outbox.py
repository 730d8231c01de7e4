"""The local outbox: every email a run would send, as files anyone can open.

The sender used when no ``SENDGRID_API_KEY`` is set. Each recipient of a batch becomes
``<message_key>.eml`` (open it in any mail client) plus a line in ``index.jsonl`` listing who
got what. The batch's content is substituted per recipient exactly as SendGrid does it, so the
outbox shows the bytes SendGrid would send. The ``.eml``
files are the truth: a message whose file exists was delivered, so sending it again writes
nothing, and ``was_delivered`` can settle a ledger row left pending by a crash.
"""

from __future__ import annotations

import binascii
import json
import re
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import TextIO

from flows.email.message import (
    EmailProviderError,
    OutgoingBatch,
    Recipient,
    SendResult,
    substitute,
)
from flows.files import write_atomically

INDEX_FILE = "index.jsonl"
# Message keys become file names: nothing that could climb out of the outbox or hide a file.
MESSAGE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# local@domain.tld, without the characters that end, split or quote an address in a header
_ADDRESS_PART = r"[^@\s<>()\[\]\\,;:\"]+"
EMAIL_ADDRESS = re.compile(rf"{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}")


@lru_cache(maxsize=1024)
def _parse_sender(from_email: str) -> tuple[str, str]:
    """Display name and address; cached, as a run has one sender and a few reps to reply to."""
    return parseaddr(from_email)


def _message_id(batch: OutgoingBatch, recipient: Recipient) -> str:
    """Derived from the key, so a repeated send reports the id of the file already written."""
    domain = _parse_sender(batch.from_email)[1].rpartition("@")[2] or "leadflow.invalid"
    return f"<{recipient.message_key}@{domain}>"


def _header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header contains a line break (header injection refused)")
    if value.isascii():
        return f"{name}: {value}"
    return f"{name}: {Header(value, 'utf-8', header_name=name).encode()}"


def _address(name: str, display_name: str, address: str) -> str:
    if not (address.isascii() and EMAIL_ADDRESS.fullmatch(address)):
        raise ValueError(f"the {name} address {address!r} is not a valid email address")
    return f"{name}: {formataddr((' '.join(display_name.split()), address), charset='utf-8')}"


def _part(content_type: str, content: str) -> str:
    encoded = binascii.b2a_qp(content.encode("utf-8"), istext=True).decode("ascii")
    # No newline after the content: the one before the next boundary belongs to the boundary.
    return (
        f'Content-Type: {content_type}; charset="utf-8"\n'
        f"Content-Transfer-Encoding: quoted-printable\n\n{encoded}"
    )


def to_eml(
    batch: OutgoingBatch, recipient: Recipient, message_id: str, written_at: datetime
) -> bytes:
    """One recipient's message as RFC 5322 bytes: multipart/alternative, text then HTML.

    Written directly rather than through ``email.message.EmailMessage``, which took about
    2-3 ms per message here (most of it parsing the headers we had just built) against ~0.1 ms:
    the outbox is meant to keep up with thousands of emails per second. The email package still
    encodes what is subtle (addresses, non-ASCII headers, dates); both parts are
    quoted-printable, in which ``==`` cannot occur, so the boundary can never appear in them.
    The unsubscribe headers are the RFC 8058 one-click pair SendGrid requests carry too.
    """
    from_name, from_address = _parse_sender(batch.from_email)
    boundary = f"==leadflow-{recipient.message_key}=="
    reply_to = [_address("Reply-To", *_parse_sender(batch.reply_to))] if batch.reply_to else []
    test = ["X-LeadFlow-Test: yes"] if batch.is_test else []
    lines = [
        _address("From", from_name, from_address),
        _address("To", recipient.to_name, recipient.to_email),
        *reply_to,
        _header("Subject", recipient.subject),
        f"Date: {format_datetime(written_at)}",
        f"Message-ID: {message_id}",
        f"X-LeadFlow-Message-Key: {recipient.message_key}",
        *test,
        _header("List-Unsubscribe", f"<{recipient.unsubscribe_url}>"),
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        _part("text/plain", substitute(batch.text, recipient.substitutions)),
        f"--{boundary}",
        _part("text/html", substitute(batch.html, recipient.substitutions)),
        f"--{boundary}--",
        "",
    ]
    return "\n".join(lines).encode("ascii")


class OutboxSender:
    provider = "outbox"

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir
        self.index_path = outbox_dir / INDEX_FILE
        self._indexed: set[str] = set()
        self._index_bytes_read = 0

    def check(self) -> None:
        """The outbox needs only a folder it can write in."""
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EmailProviderError(
                f"cannot create the outbox {self.outbox_dir} ({error.strerror}): set "
                "LEADFLOW_DATA_DIR to a folder you can write in, or set SENDGRID_API_KEY"
            ) from None

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        has_torn_line = self._read_new_index_lines()
        # Line-buffered: each index line reaches the file as soon as its message is written.
        with self.index_path.open("a", encoding="utf-8", buffering=1) as index:
            if has_torn_line:
                index.write("\n")
            return [self._deliver(batch, recipient, index) for recipient in batch.recipients]

    def was_delivered(self, message_key: str) -> bool:
        return self._eml_path(message_key).is_file()

    def _deliver(self, batch: OutgoingBatch, recipient: Recipient, index: TextIO) -> SendResult:
        key = recipient.message_key
        message_id = _message_id(batch, recipient)
        written_at = datetime.now(UTC)
        try:
            path = self._eml_path(key)
            if not path.is_file():
                write_atomically(path, to_eml(batch, recipient, message_id, written_at))
        except ValueError as error:  # a key, address or header it cannot write
            return SendResult(key, "failed", None, str(error))
        if key not in self._indexed:
            entry = {
                "message_key": key,
                "to": recipient.to_email,
                "subject": recipient.subject,
                "track": batch.track,
                "step": batch.step,
                "file": path.name,
                "written_at": written_at.isoformat(timespec="milliseconds"),
                **({"test": True} if batch.is_test else {}),
            }
            index.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._indexed.add(key)
        return SendResult(key, "sent", message_id, None)

    def _eml_path(self, message_key: str) -> Path:
        if not MESSAGE_KEY.fullmatch(message_key):
            raise ValueError(
                f"message key {message_key!r} cannot name an outbox file: use letters, digits, "
                "'-' and '_' (the ledger's md5 keys always do)"
            )
        return self.outbox_dir / f"{message_key}.eml"

    def _read_new_index_lines(self) -> bool:
        """Add keys other writers (or earlier runs) indexed; True if the file ends mid-line."""
        try:
            with self.index_path.open("rb") as index:
                index.seek(self._index_bytes_read)
                new = index.read()
        except FileNotFoundError:
            return False
        complete, newline, torn = new.rpartition(b"\n")
        for line in complete.split(b"\n"):
            try:
                self._indexed.add(json.loads(line)["message_key"])
            except (ValueError, KeyError, TypeError):
                continue  # a blank line, or one a crash cut short: its .eml is re-indexed on resend
        self._index_bytes_read += len(complete) + len(newline)
        return bool(torn)
