"""Digests: one customer's reminders on one channel that are sent together go as one message
listing each policy, from the channel's digest template (DIGEST_CHANNELS; by default email).

Together means claimed for the same send: the fan-out claims a customer's reminders released
at the same time (planned by the same daily run, or released together from waiting) into one
batch (planning.fan_out), and `send_many` claims a batch with one conditional UPDATE. What the
claim did not win, or what may no longer go (a renewed policy, an opted-out customer:
dispatch.why_not_send), drops out before the message is written; a digest of one is an
ordinary reminder. Each reminder keeps its own row and timeline, and points at the one Digest
it went in, written (with what it says to whom) before it is sent: recovery asks the provider
about that message once and settles all its reminders alike (notifications.recovery)."""

import dataclasses
import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction

from notifications.channels import OutgoingMessage, sms
from notifications.models import Channel, Digest, MessageTemplate, Notification
from notifications.rendering import ProductLines, digest_template, render, render_digest
from notifications.updates import each_row

logger = logging.getLogger(__name__)
# What a batch sends: the reminders one message carries, and that message (or why it could not
# be written: a template that does not render, for those reminders only).
Send = tuple[list[Notification], OutgoingMessage | Exception]


def messages_for(
    notifications: list[Notification], lines: ProductLines, lease_id: int
) -> list[Send]:
    """The messages a batch's ready notifications go as: one per customer and digest channel
    where a digest can be written, one per notification otherwise. The digests are recorded,
    and their reminders pointed at them, before anything is sent."""
    templates: dict[str, MessageTemplate | None] = {}
    sends, digests = [], []
    for members in group(notifications):
        if len(members) > 1:
            channel = members[0].channel
            if channel not in templates:
                templates[channel] = digest_template(channel)
            message = _digest_message(templates[channel], members, lines)
            if message is not None:
                digests.append((members, message))
                continue
        for notification in members:
            try:
                sends.append(([notification], render(notification, lines)))
            except Exception as error:  # a template that does not render: this one only
                sends.append(([notification], error))
    return _recorded(digests, sends, lease_id) + sends


def group(notifications: list[Notification]) -> list[list[Notification]]:
    """The notifications by customer and channel, on the digest channels, at most
    DIGEST_MAX_POLICIES a group; alone on the other channels."""
    digest_channels = set(settings.DIGEST_CHANNELS)
    groups: dict[tuple, list[Notification]] = defaultdict(list)
    for notification in notifications:
        if notification.channel in digest_channels:
            key = (notification.customer_id, notification.channel)
        else:
            key = ("alone", notification.pk)
        groups[key].append(notification)
    most = settings.DIGEST_MAX_POLICIES
    return [
        members[start : start + most]
        for members in groups.values()
        for start in range(0, len(members), most)
    ]


def _digest_message(
    template: MessageTemplate | None, members: list[Notification], lines: ProductLines
) -> OutgoingMessage | None:
    """The digest of `members`, or None when they go separately: no digest template for the
    channel, one that does not render (the reminders still go, each in its own words), or an
    SMS longer than SMS_DIGEST_MAX_SEGMENTS."""
    if template is None:
        return None
    try:
        message = render_digest(template, members, lines)
    except Exception:
        logger.exception("the %s digest template does not render", template.channel)
        return None
    if members[0].channel == Channel.SMS:
        body = sms.with_short_links(message.body) if sms.shortens_links() else message.body
        if sms.sms_segments(body) > settings.SMS_DIGEST_MAX_SEGMENTS:
            return None
    return message


def _recorded(
    digests: list[tuple[list[Notification], OutgoingMessage]], singles: list[Send], lease_id: int
) -> list[Send]:
    """Write each digest, and point its reminders at it (and reminders going alone now at none,
    should an earlier attempt have sent them in one), in two queries; the messages, named by
    their digest for the provider's callbacks and for recovery's lookup."""
    alone = {
        notification.pk: None
        for members, _ in singles
        for notification in members
        if notification.digest_id is not None
    }
    if not digests and not alone:
        return []
    with transaction.atomic():
        rows = Digest.objects.bulk_create(
            [
                Digest(
                    customer_id=members[0].customer_id,
                    channel=members[0].channel,
                    to=message.to,
                    subject=message.subject,
                    body=message.body,
                )
                for members, message in digests
            ]
        )
        owner = alone | {
            notification.pk: row.pk
            for row, (members, _) in zip(rows, digests, strict=True)
            for notification in members
        }
        # Only what this worker still holds: nothing recovery has taken over.
        Notification.objects.filter(
            pk__in=owner, status=Notification.Status.SENDING, lease_id=lease_id
        ).update(digest=each_row(Notification, owner, "digest"))
    sends = []
    for row, (members, message) in zip(rows, digests, strict=True):
        for notification in members:
            notification.digest_id = row.pk
        sends.append(
            (
                members,
                dataclasses.replace(message, digest_id=row.pk, metadata={"digest_id": str(row.pk)}),
            )
        )
    for members, _ in singles:
        for notification in members:
            notification.digest_id = None
    return sends
