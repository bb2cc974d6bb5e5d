"""Idempotency-Key for every POST (the IETF httpapi-idempotency-key draft, as Stripe implements
it). The first request with a key claims it, runs, and stores its answer in the same
transaction as its effects; the same key and body again answers that stored answer; the same key
with another body answers 422; while the first is still running, 409. A request that failed
before it could take effect (invalid, refused) stores nothing: the key can be used again. A key
whose request died with its process is taken over once its lock lapses."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from api.models import ApiKey, IdempotencyKey
from api.problems import Problem

HEADER = "Idempotency-Key"
State = IdempotencyKey.State


@dataclass(frozen=True)
class Claimed:
    record: IdempotencyKey


@dataclass(frozen=True)
class Replay:
    status: int
    body: object


def fingerprint(method: str, path: str, body: object) -> str:
    """The request a key stands for: the same JSON, however its keys or spaces are laid out."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(*, api_key: ApiKey, key: str, request_fingerprint: str) -> Claimed | Replay:
    """Claim `key` for this request, or say what to answer instead (raises Problem)."""
    now = timezone.now()
    lock = now + timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
    for _ in range(2):  # a second time after an expired key is removed
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    api_key=api_key, key=key, fingerprint=request_fingerprint, locked_until=lock
                )
            return Claimed(record)
        except IntegrityError:
            existing = IdempotencyKey.objects.filter(api_key=api_key, key=key).first()
        if existing is None:
            continue  # released meanwhile
        if existing.created_at < expired_before(now):
            IdempotencyKey.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.fingerprint != request_fingerprint:
            raise Problem(
                422,
                f"This {HEADER} was used for a different request (another path or body); "
                "use a new key for a new request.",
            )
        if existing.state == State.COMPLETED:
            return Replay(existing.response_status, existing.response_body)
        taken = IdempotencyKey.objects.filter(
            pk=existing.pk, state=State.IN_FLIGHT, locked_until__lt=now
        ).update(locked_until=lock)
        if taken:
            return Claimed(existing)
        raise Problem(
            409,
            f"A request with this {HEADER} is still being processed; retry once it has finished.",
        )
    raise Problem(409, f"This {HEADER} is changing hands; retry.")


def as_json(data: object) -> object:
    """The answer as its client read it (dates and times in the API's own ISO form), so that a
    replay is the same answer: the JSON column takes no date."""
    return json.loads(JSONRenderer().render(data))


def expired_before(now: datetime) -> datetime:
    return now - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def purge_expired(*, now: datetime | None = None) -> int:
    """Housekeeping: forget keys older than IDEMPOTENCY_KEY_HOURS. Returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(
        created_at__lt=expired_before(now or timezone.now())
    ).delete()
    return deleted


def idempotent(handler):
    """For a POST handler of an APIView: honours the Idempotency-Key header when it is sent."""

    @wraps(handler)
    def run(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise Problem(
                400,
                f"{HEADER} must be 1 to 255 printable characters.",
                errors=[{"pointer": "", "detail": f"invalid {HEADER} header"}],
            )
        outcome = claim(
            api_key=request.auth,
            key=key,
            request_fingerprint=fingerprint(request.method, request.path, request.data),
        )
        if isinstance(outcome, Replay):
            return Response(
                outcome.body, status=outcome.status, headers={"Idempotent-Replayed": "true"}
            )
        record = outcome.record
        try:
            with transaction.atomic():
                response = handler(view, request, *args, **kwargs)
                if not 200 <= response.status_code < 300:
                    raise _NotStored(response)
                IdempotencyKey.objects.filter(pk=record.pk).update(
                    state=State.COMPLETED,
                    response_status=response.status_code,
                    response_body=as_json(response.data),
                )
                return response
        except _NotStored as not_stored:
            _release(record)
            return not_stored.response
        except BaseException:
            _release(record)
            raise

    return run


class _NotStored(exceptions.APIException):
    """An answer that is not a success: its effects roll back and the key is released."""

    def __init__(self, response: Response):
        self.response = response


def _release(record: IdempotencyKey) -> None:
    IdempotencyKey.objects.filter(pk=record.pk, state=State.IN_FLIGHT).delete()
