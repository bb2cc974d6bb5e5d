"""Send this test process's tasks to a broker and queue of the test's choosing, where a worker
from tests.workers reads them: the project's app publishes to the configured broker, fixed when
the process started."""

from contextlib import contextmanager

from celery import Celery, _state

from config.celery import app as project_app
from config.queues import bulk_queue_for, task_routes


@contextmanager
def publishing_to(*, broker_url: str, queue: str):
    """For the block, `current_app` (in every thread: a live server's too) is an app that sends
        to `broker_url` on `queue`, and the long jobs to its bulk queue, as the project's app routes
    them. Services that send tasks by name then reach the test's worker(s)."""
    app = Celery("renewly-test-publisher", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        # Long jobs to the queue a worker with CELERY_TASK_DEFAULT_QUEUE=queue sends them to.
        task_routes=task_routes(bulk_queue=bulk_queue_for(queue)),
        broker_connection_retry_on_startup=True,
    )
    previous_default = _state.default_app
    app.set_current()
    app.set_default()
    try:
        yield app
    finally:
        project_app.set_current()
        _state.set_default_app(previous_default)
        app.close()
