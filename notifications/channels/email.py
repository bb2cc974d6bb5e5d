from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from notifications.channels.base import OutgoingMessage

NOTIFICATION_HEADER = "X-Renewly-Notification"


class EmailChannel:
    """Sends through Django's email API, so EMAIL_BACKEND alone picks the provider: the local
    outbox, SMTP, or any ESP anymail supports."""

    def send(self, message: OutgoingMessage) -> str:
        message_id = make_msgid(
            idstring=f"notification-{message.notification_id}", domain="renewly"
        )
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers={NOTIFICATION_HEADER: str(message.notification_id), "Message-ID": message_id},
        )
        if message.html_body:
            email.attach_alternative(message.html_body, "text/html")
        email.send()
        status = getattr(email, "anymail_status", None)  # set by anymail backends only
        return (status and status.message_id) or message_id
