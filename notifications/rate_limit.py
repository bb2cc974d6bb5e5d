"""A per-channel send rate shared by every worker, for the provider's throughput: a counter per
channel and second in Redis. A send over the limit waits for the next second."""

import math
import time
from collections.abc import Callable
from functools import lru_cache

import redis
from django.conf import settings


def limit_for(channel: str) -> int:
    """Messages per second allowed on the channel; 0 means no limit."""
    return settings.SEND_RATE_LIMITS.get(channel, 0)


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    # A send waits for its turn here: a Redis that stops answering must not hold it forever.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def acquire(
    channel: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return when one more message may go on `channel` this second, waiting if it must."""
    limit = limit_for(channel)
    if not limit:
        return
    client = _redis(settings.REDIS_URL)
    while True:
        now = clock()
        second = math.floor(now)
        key = f"renewly:rate:{channel}:{second}"
        with client.pipeline() as pipe:
            count, _ = pipe.incr(key).expire(key, 5).execute()
        if count <= limit:
            return
        sleep(second + 1 - now)
