"""The local outbox: reminders written as files under OUTBOX_DIR instead of being sent, for the
demo and for development. Email through Django's email API (as an EMAIL_BACKEND), SMS and
WhatsApp as JSON."""

import json
import os
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from notifications.channels.base import FoundMessage, OutgoingMessage
from notifications.channels.email import DIGEST_HEADER, NOTIFICATION_HEADER
from notifications.channels.sms import sms_segments
from notifications.channels.whatsapp import require_content
from notifications.files import write_atomically


class EmailBackend(BaseEmailBackend):
    """Writes each email as an .eml file under OUTBOX_DIR/email, named after its notification
    (or the weekly report it carries)."""

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            write_atomically(_email_path(message.extra_headers), message.message().as_bytes())
        return len(email_messages)

    def find_by_metadata(self, metadata_key: str, value: object) -> list[FoundMessage]:
        """The outbox's answer to "was it sent?": the file of the email whose metadata says
        this (a notification's id, a weekly report's) is there, written whole, with its
        Message-ID (new at each attempt) and time."""
        return _found_email(_email_path({NAMING_HEADERS[metadata_key]: value}))


REPORT_HEADER = "X-Renewly-Report"
REPORT_METADATA = "weekly_report"  # a weekly report's id, in its email's metadata
CALL_LIST_HEADER = "X-Renewly-Call-List"
CALL_LIST_METADATA = "call_list_email"  # a CallListEmail's id, in its email's metadata
# The metadata that names an email, and the header its outbox file is named by.
NAMING_HEADERS = {
    "notification_id": NOTIFICATION_HEADER,
    "digest_id": DIGEST_HEADER,
    REPORT_METADATA: REPORT_HEADER,
    CALL_LIST_METADATA: CALL_LIST_HEADER,
}


def _email_path(headers: dict) -> Path:
    if notification := headers.get(NOTIFICATION_HEADER):
        name = f"notification-{notification}"
    elif digest := headers.get(DIGEST_HEADER):
        name = f"digest-{digest}"
    elif report := headers.get(REPORT_HEADER):
        name = f"report-{report}"
    elif call_list := headers.get(CALL_LIST_HEADER):
        name = f"call-list-{call_list}"
    else:
        name = uuid.uuid4().hex
    return Path(settings.OUTBOX_DIR) / "email" / f"{name}.eml"


def _found_email(path: Path) -> list[FoundMessage]:
    try:
        with open(path, "rb") as file:
            headers = BytesHeaderParser().parse(file)
            written = datetime.fromtimestamp(os.fstat(file.fileno()).st_mtime, UTC)
    except FileNotFoundError:
        return []
    return [FoundMessage(headers.get("Message-ID", path.name), written)]


class OutboxSmsChannel:
    """Writes each SMS as a JSON file under OUTBOX_DIR/sms, named after its notification."""

    def send(self, message: OutgoingMessage) -> str:
        provider_id = f"outbox-{uuid.uuid4().hex}"
        record = {
            "id": provider_id,
            "notification_id": message.notification_id,
            "digest_id": message.digest_id,
            "to": message.to,
            "body": message.body,
            "segments": sms_segments(message.body),
            "written_at": timezone.now().isoformat(),
        }
        write_atomically(
            _sms_path(message),
            json.dumps(record, indent=2, ensure_ascii=False).encode(),
        )
        return provider_id

    can_look_up = True

    def find_sent(self, message: OutgoingMessage, *, since: datetime) -> list[FoundMessage]:
        try:
            record = json.loads(_sms_path(message).read_bytes())
        except FileNotFoundError:
            return []
        return [FoundMessage(record["id"], datetime.fromisoformat(record["written_at"]))]


def _sms_path(message: OutgoingMessage, folder: str = "sms") -> Path:
    if message.digest_id:
        name = f"digest-{message.digest_id}"
    else:
        name = f"notification-{message.notification_id}"
    return Path(settings.OUTBOX_DIR) / folder / f"{name}.json"


class OutboxWhatsAppChannel:
    """Writes each WhatsApp message as JSON under OUTBOX_DIR/whatsapp: the approved content's
    SID and variables it would send, and its words (the template's body) to read."""

    can_look_up = True

    def send(self, message: OutgoingMessage) -> str:
        require_content(message)  # as the Twilio channel: the demo shows the fallback too
        provider_id = f"outbox-{uuid.uuid4().hex}"
        record = {
            "id": provider_id,
            "notification_id": message.notification_id,
            "to": f"whatsapp:{message.to}",
            "content_sid": message.content_sid,
            "content_variables": message.content_variables,
            "body": message.body,
            "written_at": timezone.now().isoformat(),
        }
        write_atomically(
            _sms_path(message, "whatsapp"),
            json.dumps(record, indent=2, ensure_ascii=False).encode(),
        )
        return provider_id

    def find_sent(self, message: OutgoingMessage, *, since: datetime) -> list[FoundMessage]:
        try:
            record = json.loads(_sms_path(message, "whatsapp").read_bytes())
        except FileNotFoundError:
            return []
        return [FoundMessage(record["id"], datetime.fromisoformat(record["written_at"]))]
