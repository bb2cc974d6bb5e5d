"""The local outbox: reminders written as files under OUTBOX_DIR instead of being sent, for the
demo and for development. Email through Django's email API (as an EMAIL_BACKEND), SMS as JSON."""

import json
import uuid
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from notifications.channels.base import OutgoingMessage
from notifications.channels.email import NOTIFICATION_HEADER
from notifications.channels.sms import sms_segments
from notifications.files import write_atomically


class EmailBackend(BaseEmailBackend):
    """Writes each email as an .eml file under OUTBOX_DIR/email, named after its notification."""

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            notification = message.extra_headers.get(NOTIFICATION_HEADER)
            name = f"notification-{notification}" if notification else uuid.uuid4().hex
            write_atomically(
                Path(settings.OUTBOX_DIR) / "email" / f"{name}.eml", message.message().as_bytes()
            )
        return len(email_messages)


class OutboxSmsChannel:
    """Writes each SMS as a JSON file under OUTBOX_DIR/sms, named after its notification."""

    def send(self, message: OutgoingMessage) -> str:
        provider_id = f"outbox-{uuid.uuid4().hex}"
        record = {
            "id": provider_id,
            "notification_id": message.notification_id,
            "to": message.to,
            "body": message.body,
            "segments": sms_segments(message.body),
            "written_at": timezone.now().isoformat(),
        }
        path = Path(settings.OUTBOX_DIR) / "sms" / f"notification-{message.notification_id}.json"
        write_atomically(path, json.dumps(record, indent=2, ensure_ascii=False).encode())
        return provider_id
