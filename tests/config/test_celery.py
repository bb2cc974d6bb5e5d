"""The Celery app works on each broker Renewly supports: a task sent by one process is run by a
real worker process, and its result lands in the database through django-celery-results."""

import os
import socket
import uuid

import pytest
from celery import Celery
from django_celery_results.models import TaskResult

from config.celery import app
from policies.models import Policy
from tests.factories import make_agent
from tests.workers import celery_worker, wait_for, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
AMQP_TEST_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

CSV = (
    "policy_number,product_line,customer_name,customer_email,customer_phone,customer_timezone,"
    "customer_language,agent_email,start_date,expiry_date,status\n"
    "W-1,auto,Ana Ruiz,ana@mail.example,+34600000001,Europe/Madrid,es,"
    "agent@agency.example,2026-01-01,2027-01-01,active\n"
    "W-2,home,Ben Lee,ben@mail.example,,America/New_York,en,"
    "agent@agency.example,2026-01-01,2025-01-01,active\n"
)


def filesystem_options(var_dir):
    folder = var_dir / "broker"
    return {
        "data_folder_in": str(folder / "messages"),
        "data_folder_out": str(folder / "messages"),
        "control_folder": str(folder / "control"),
    }


@pytest.fixture(
    params=[
        "filesystem",
        pytest.param("redis", marks=pytest.mark.services),
        pytest.param("amqp", marks=pytest.mark.services),
    ]
)
def broker(request, require_service, tmp_path):
    """(broker URL, transport options) for each broker Renewly supports."""
    if request.param == "filesystem":
        for folder in filesystem_options(tmp_path).values():
            os.makedirs(folder, exist_ok=True)
        return "filesystem://localhost/", filesystem_options(tmp_path)
    if request.param == "redis":
        return require_service("Redis", REDIS_TEST_URL), {}
    return require_service("RabbitMQ", AMQP_TEST_URL), {}


@pytest.mark.django_db(transaction=True)
def test_task_sent_through_the_broker_runs_in_a_worker_and_stores_its_result(broker, tmp_path):
    broker_url, transport_options = broker
    make_agent("agent", "agent@agency.example")
    csv_path = tmp_path / "policies.csv"
    csv_path.write_text(CSV)
    queue = f"renewly-test-{uuid.uuid4().hex[:8]}"
    sender = Celery("sender", broker=broker_url, set_as_current=False)
    sender.conf.broker_transport_options = transport_options

    try:
        with celery_worker(broker_url=broker_url, queue=queue, var_dir=tmp_path):
            sent = sender.send_task(
                "policies.tasks.import_policies_file", args=[str(csv_path)], queue=queue
            )

            def task_result():
                return TaskResult.objects.filter(task_id=sent.id, status="SUCCESS").first()

            result = wait_for(task_result, timeout=90, explain=lambda: worker_log(tmp_path, queue))
    finally:
        with sender.connection_for_write() as connection:
            if not broker_url.startswith("filesystem"):
                connection.default_channel.queue_delete(queue)

    assert result.task_name == "policies.tasks.import_policies_file"
    summary = app.backend.decode(result.result)
    assert summary["created"] == 1
    assert summary["rejected"] == 1
    assert summary["rejected_rows"][0]["line"] == 3
    assert list(Policy.objects.values_list("policy_number", flat=True)) == ["W-1"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_embedded_broker_sets_a_broken_message_aside_and_runs_the_next(tmp_path):
    queue = f"renewly-test-{uuid.uuid4().hex[:8]}"
    for folder in filesystem_options(tmp_path).values():
        os.makedirs(folder, exist_ok=True)
    # What kombu's own transport leaves for an instant: a message file created, not yet
    # written. Named to be read before the task.
    broken = tmp_path / "broker" / "messages" / f"0_{uuid.uuid4()}.{queue}.msg"
    broken.touch()
    embedded = "filesystem://localhost/"
    sender = Celery("sender", broker=embedded, set_as_current=False)
    sender.conf.broker_transport_options = filesystem_options(tmp_path)

    with celery_worker(broker_url=embedded, queue=queue, var_dir=tmp_path) as worker:
        sent = sender.send_task("notifications.tasks.release_reminders", queue=queue)

        def task_result():
            assert worker.poll() is None, f"the worker stopped\n{worker_log(tmp_path, queue)}"
            return TaskResult.objects.filter(task_id=sent.id, status="SUCCESS").first()

        wait_for(task_result, timeout=90, explain=lambda: worker_log(tmp_path, queue))
        # The remote control (/readyz's ping) goes through the same files, broadcast and reply.
        answers = sender.control.ping(destination=[f"test-{queue}@{socket.gethostname()}"])
        still_running = worker.poll() is None

    assert still_running
    assert answers
    assert (tmp_path / "broker" / "quarantine" / broken.name).exists()
    assert "unreadable broker message set aside" in worker_log(tmp_path, queue)
