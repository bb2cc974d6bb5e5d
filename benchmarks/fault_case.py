"""One case of the fault suite, in a process of its own (benchmarks/faults.py starts one per
fault and broker): it starts the case's private servers, points Django and the workers at them,
runs the fault (benchmarks/fault_scenarios.py) and writes its row as JSON to --result.

Each case has its own PostgreSQL database (--database, dropped at the end), its own broker
queue, its own fake provider, and private servers: a redis-server for every Redis case (the
broker, killed in broker-kill), a RabbitMQ node for RabbitMQ's broker-kill (the other RabbitMQ
cases use a queue of their own on FAULTS_AMQP_URL, the machine's RabbitMQ by default), and a
PostgreSQL cluster for postgres-restart."""

import argparse
import json
import os
import signal
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "0")  # workers run as production does
os.environ.setdefault("SECRET_KEY", "renewly-faults-only-not-a-secret")
# What a case measures must not depend on the clock (quiet hours) nor on rate limits.
os.environ["SMS_WINDOW_START_HOUR"] = "0"
os.environ["SMS_WINDOW_END_HOUR"] = "24"
os.environ["EMAIL_RATE_LIMIT_PER_SECOND"] = "0"
os.environ["SMS_RATE_LIMIT_PER_SECOND"] = "0"
# Minutes where production has hours, so that a case recovers in a minute or two: a stalled
# notification is sent again after 1 minute (30 by default); a worker's lease lives 10 s without
# a heartbeat (60), which the settings allow only with provider timeouts under 3.75 s (they must
# outlast twice the longest: 3 s here, 20 and 10 by default); a transient provider error backs
# off 2 s, doubling to at most 30 s, for up to 30 tries (the default's 5 tries from 5 minutes to
# an hour outlast an outage of hours; these, one of a few minutes). This process (its fan-out)
# and the workers read the same.
os.environ["REMINDER_REQUEUE_AFTER_MINUTES"] = "1"
os.environ["REMINDER_WORKER_LEASE_SECONDS"] = "10"
os.environ["EMAIL_TIMEOUT_SECONDS"] = "3"
os.environ["TWILIO_TIMEOUT_SECONDS"] = "3"
os.environ["REMINDER_RETRY_BACKOFF_SECONDS"] = "2"
os.environ["REMINDER_RETRY_BACKOFF_MAX_SECONDS"] = "30"
os.environ["REMINDER_SEND_MAX_RETRIES"] = "30"

from benchmarks.servers import PostgresServer, RabbitNode, RedisServer

SHARED_RABBITMQ = os.environ.get("FAULTS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", required=True)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], required=True)
    parser.add_argument("--reminders", type=int, required=True)
    parser.add_argument("--outage-seconds", type=float, required=True)
    parser.add_argument("--database", required=True, help="the case's database, made and dropped")
    parser.add_argument("--var-dir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on any error

    queue = f"renewly-faults-{args.fault}-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        servers = {}
        if args.broker == "redis":
            servers["broker"] = stack.enter_context(RedisServer())
            broker_url = servers["broker"].url(0)
            os.environ["REDIS_URL"] = servers["broker"].url(1)
        elif args.fault == "broker-kill":
            servers["broker"] = stack.enter_context(RabbitNode())
            broker_url = servers["broker"].url()
        else:
            broker_url = SHARED_RABBITMQ
        if args.fault == "postgres-restart":
            servers["postgres"] = stack.enter_context(PostgresServer())
            os.environ["DATABASE_URL"] = servers["postgres"].url()
        os.environ["CELERY_BROKER_URL"] = broker_url  # this process's fan-out publishes there
        os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue

        import django

        django.setup()  # on the servers just started

        # Needs Django set up, on this case's servers.
        from benchmarks.fault_scenarios import run_case

        row = run_case(
            fault=args.fault,
            broker=args.broker,
            broker_url=broker_url,
            queue=queue,
            reminders=args.reminders,
            outage_seconds=args.outage_seconds,
            database=args.database,
            var_dir=args.var_dir,
            servers=servers,
        )
    args.result.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
