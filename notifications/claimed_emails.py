"""An email sent once, whatever the runs: the weekly report's, an agent's morning call list.
Its row (a notifications.models.ClaimedEmail) is claimed under this process's worker lease
before the email goes, so two runs never both send it. A claim whose worker died, or whose send
got no answer, may have been sent: the next run asks the email provider first (Postmark's search
by the email's metadata, the outbox's file) and sends only what the provider does not have. A
provider that cannot be asked (SMTP) is at-least-once: sent again once
REPORT_EMAIL_CLAIM_MINUTES have passed."""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from notifications import leases
from notifications.channels import FoundMessage, TransientSendError
from notifications.channels.email import (
    classify_email_error,
    email_backend_looks_up,
    find_emails,
)
from notifications.models import ClaimedEmail


def claim_and_email(
    row: ClaimedEmail,
    recipients: list[str],
    *,
    send: Callable[[ClaimedEmail, list[str]], None],
    metadata_key: str,
) -> bool:
    """Send `row`'s email with `send(row, recipients)` unless another run sent it or is sending
    it; whether this run sent it. `send` puts the row's id in the email's metadata under
    `metadata_key`: that is how the provider is asked about an earlier claim."""
    model = type(row)
    lease_id = leases.current().renew()
    won, earlier_claim = _claim(model, row.pk, lease_id)
    if not won:
        return False  # another run, alive, is sending it
    if earlier_claim is not None:
        try:
            found = _already_emailed(row.pk, earlier_claim, metadata_key)
        except TransientSendError as error:
            _release(model, row.pk, lease_id, keep_claim=True, error=str(error))
            return False  # the next run asks again; never sent blindly
        if found is not None:
            _confirm(model, row.pk, lease_id, recipients, sent_at=found.accepted_at)
            return False
    if not leases.current().holds(lease_id):  # the lookup took too long to be sure
        _release(
            model, row.pk, lease_id, keep_claim=earlier_claim is not None, error="lease lapsed"
        )
        return False
    try:
        send(row, recipients)
    except Exception as error:
        send_error = classify_email_error(error)
        maybe_sent = isinstance(send_error, TransientSendError) and send_error.maybe_sent
        _release(model, row.pk, lease_id, keep_claim=maybe_sent, error=str(error)[:2000])
        if send_error is None:
            raise  # a bug or a misconfiguration: not for the next run to hide
        return False
    _confirm(model, row.pk, lease_id, recipients)
    return True


def _claim(model: type[ClaimedEmail], pk: int, lease_id: int) -> tuple[bool, datetime | None]:
    """Claim the row for this run: whether it won the claim (not when a live run holds it),
    and when an earlier claim began that may have sent it (None: there was none)."""
    with transaction.atomic():
        claimable = (
            model.objects.select_for_update(of=("self",))
            .filter(Q(email_lease__isnull=True) | Q(email_lease__expires_at__lt=Now()))
            .filter(pk=pk, emailed_at__isnull=True)
            .first()
        )
        if claimable is None:
            return False, None
        earlier = claimable.email_claimed_at
        model.objects.filter(pk=pk).update(
            email_lease_id=lease_id, email_claimed_at=earlier or timezone.now()
        )
    return True, earlier


def _already_emailed(pk: int, claimed_at: datetime, metadata_key: str) -> FoundMessage | None:
    """The email an earlier claim sent, as the provider has it; None when it has none, or has
    no lookup and the claim is old enough to send again (until then, as if it could not say)."""
    if not email_backend_looks_up():
        if timezone.now() - claimed_at < timedelta(minutes=settings.REPORT_EMAIL_CLAIM_MINUTES):
            raise TransientSendError("the email backend cannot say whether it sent the email")
        return None
    connection = get_connection()
    connection.open()
    try:
        found = find_emails(connection, metadata_key, pk)
    finally:
        connection.close()
    return found[0] if found else None


def _release(
    model: type[ClaimedEmail], pk: int, lease_id: int, *, keep_claim: bool, error: str
) -> None:
    """Give the claim back: kept as a claim (to be reconciled) when the email may have gone."""
    fields = {"email_lease": None, "email_error": error}
    if not keep_claim:
        fields["email_claimed_at"] = None
    model.objects.filter(pk=pk, email_lease_id=lease_id).update(**fields)


def _confirm(
    model: type[ClaimedEmail],
    pk: int,
    lease_id: int,
    recipients: list[str],
    *,
    sent_at: datetime | None = None,
) -> None:
    model.objects.filter(pk=pk, email_lease_id=lease_id).update(
        emailed_at=sent_at or timezone.now(),
        emailed_to=", ".join(recipients),
        email_error="",
        email_lease=None,
    )
