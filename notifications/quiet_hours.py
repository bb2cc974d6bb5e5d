"""SMS only reaches a customer during the day where they are."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings


def next_sms_window(now: datetime, zone: ZoneInfo) -> datetime | None:
    """None when an SMS may go now in `zone`; otherwise the moment the next allowed window
    opens there (SMS_WINDOW_START to SMS_WINDOW_END, local hours). Computed in local time, so
    a change to or from summer time moves the window with the clock."""
    start, end = settings.SMS_WINDOW_START_HOUR, settings.SMS_WINDOW_END_HOUR
    local = now.astimezone(zone)
    if start <= local.hour < end:
        return None
    day = local.date() if local.hour < start else local.date() + timedelta(days=1)
    return datetime.combine(day, time(start), tzinfo=zone)
