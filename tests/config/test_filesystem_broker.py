"""The embedded broker (config/broker.py) neither stops a worker nor loses a message when
several processes share its folder: kombu's own filesystem transport can read a message that is
still being written and die on it (kombu issue #1551)."""

import json
import logging
import multiprocessing
import os
import uuid
from collections import Counter

import pytest
from kombu import Connection, Exchange, Queue

from config.broker import WRITING_SUFFIX, Transport

STOCK = "kombu.transport.filesystem:Transport"
PRODUCERS = 4
MESSAGES_PER_PRODUCER = 1500
BROADCASTS_PER_PRODUCER = 25
WORK = Queue("stress", Exchange("stress", "direct"), routing_key="stress")
BROADCAST = Exchange("stress-broadcast", "fanout")


def broker_options(folder) -> dict:
    return {
        "data_folder_in": str(folder / "messages"),
        "data_folder_out": str(folder / "messages"),
        "control_folder": str(folder / "control"),
        "quarantine_folder": str(folder / "quarantine"),
        "polling_interval": 0.05,
    }


# The transport named in full: Renewly's, or kombu's own (STOCK) where a test shows it fail.
def connect(folder, transport: str = "config.broker:Transport") -> Connection:
    options = broker_options(folder)
    for option in ("data_folder_in", "control_folder"):
        os.makedirs(options[option], exist_ok=True)
    return Connection("filesystem://", transport=transport, transport_options=options)


@pytest.fixture
def queue_name():
    # Each its own: a process remembers the bindings it made, in whichever folder.
    return f"renewly-{uuid.uuid4().hex[:8]}"


def message_file(folder, queue: str, content: bytes) -> str:
    """A file named as kombu names a message, read before any published now."""
    name = f"0_{uuid.uuid4()}.{queue}.msg"
    (folder / "messages" / name).write_bytes(content)
    return name


def test_a_filesystem_url_means_renewlys_transport_and_no_other_url_changes():
    assert Connection("filesystem://").get_transport_cls() is Transport
    assert Connection("redis://127.0.0.1:6379/14").get_transport_cls().__module__ == (
        "kombu.transport.redis"
    )
    assert Connection("amqp://guest@127.0.0.1//").get_transport_cls().__module__ == (
        "kombu.transport.pyamqp"
    )


# --- Many processes at once ----------------------------------------------------------------


def produce(folder, index: int) -> None:
    with connect(folder) as connection:
        producer = connection.Producer(serializer="json")
        for number in range(MESSAGES_PER_PRODUCER):
            producer.publish(
                {"id": f"{index}-{number}"},
                exchange=WORK.exchange,
                routing_key="stress",
                declare=[WORK],
            )
            if number % (MESSAGES_PER_PRODUCER // BROADCASTS_PER_PRODUCER) == 0:
                body = {"id": f"{index}-{number}"}
                producer.publish(body, exchange=BROADCAST, declare=[BROADCAST])


def consume(folder, name: str, ready, producers_done) -> None:
    """Take work and broadcasts until the producers are done and the folder stays empty."""
    received = {"work": [], "broadcast": []}

    def record(body, message):
        kind = "broadcast" if message.delivery_info["exchange"] == BROADCAST.name else "work"
        received[kind].append(body["id"])
        message.ack()

    own_queue = Queue(f"stress-{name}", BROADCAST)
    with (
        connect(folder) as connection,
        connection.Consumer([WORK, own_queue], callbacks=[record], accept=["json"]),
    ):
        ready.set()
        while True:
            try:
                connection.drain_events(timeout=1)
            except TimeoutError:
                if producers_done.is_set():
                    break
    (folder / f"{name}.json").write_text(json.dumps(received))


def test_four_producers_and_two_consumers_lose_nothing_and_deliver_each_message_once(tmp_path):
    processes = multiprocessing.get_context("spawn")
    producers_done = processes.Event()
    ready = {name: processes.Event() for name in ("first", "second")}
    consumers = [
        processes.Process(target=consume, args=(tmp_path, name, ready[name], producers_done))
        for name in ready
    ]
    producers = [processes.Process(target=produce, args=(tmp_path, i)) for i in range(PRODUCERS)]

    for consumer in consumers:
        consumer.start()
    for event in ready.values():
        assert event.wait(timeout=30), "a consumer did not start"
    for producer in producers:
        producer.start()
    for process in producers:
        process.join(timeout=60)
    producers_done.set()
    for process in consumers:
        process.join(timeout=60)

    assert [p.exitcode for p in producers + consumers] == [0] * (PRODUCERS + 2)
    received = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ready}
    work = Counter(i for name in ready for i in received[name]["work"])
    sent = {f"{p}-{n}" for p in range(PRODUCERS) for n in range(MESSAGES_PER_PRODUCER)}
    assert set(work) == sent  # none lost...
    assert max(work.values()) == 1  # ...and none delivered twice
    assert all(received[name]["work"] for name in ready)  # both consumers took a share
    broadcasts = PRODUCERS * BROADCASTS_PER_PRODUCER
    for name in ready:  # every consumer hears every broadcast, once
        assert len(set(received[name]["broadcast"])) == len(received[name]["broadcast"])
        assert len(received[name]["broadcast"]) == broadcasts
    assert not (tmp_path / "quarantine").exists()
    assert sorted(os.listdir(tmp_path / "messages")) == [".claimed"]
    assert os.listdir(tmp_path / "messages" / ".claimed") == []


# --- A file that is not a whole message ------------------------------------------------------

HALF_WRITTEN = {
    "just created": b"",
    "cut short": b'{"body": "eyJpZCI6',
    "not text": b"\xff\xfe\x00",
    "not a message": b"[1, 2, 3]",
}


@pytest.mark.parametrize("content", HALF_WRITTEN.values(), ids=HALF_WRITTEN.keys())
def test_kombus_own_reader_dies_on_a_half_written_message(tmp_path, queue_name, content):
    with connect(tmp_path, transport=STOCK) as connection:
        queue = connection.SimpleQueue(queue_name)
        message_file(tmp_path, queue_name, content)
        with pytest.raises((ValueError, TypeError, KeyError)):
            queue.get(timeout=1)


@pytest.mark.parametrize("content", HALF_WRITTEN.values(), ids=HALF_WRITTEN.keys())
def test_ours_sets_a_half_written_message_aside_and_reads_the_next(
    tmp_path, queue_name, content, caplog
):
    with connect(tmp_path) as connection:
        queue = connection.SimpleQueue(queue_name)
        bad = message_file(tmp_path, queue_name, content)
        queue.put({"id": "after it"})

        with caplog.at_level(logging.WARNING, logger="config.broker"):
            message = queue.get(timeout=1)

    assert message.payload == {"id": "after it"}
    assert (tmp_path / "quarantine" / bad).read_bytes() == content
    assert f"unreadable broker message set aside in {tmp_path / 'quarantine' / bad}" in caplog.text


def test_a_message_being_written_is_taken_only_once_renamed_into_place(tmp_path, queue_name):
    with connect(tmp_path) as connection:
        queue = connection.SimpleQueue(queue_name)
        queue.put({"id": "whole"})
        [name] = [n for n in os.listdir(tmp_path / "messages") if n.endswith(".msg")]
        whole = (tmp_path / "messages" / name).read_bytes()
        # The same message as a writer leaves it halfway: under the name it is written as.
        writing = tmp_path / "messages" / f".{name}.{uuid.uuid4().hex}{WRITING_SUFFIX}"
        (tmp_path / "messages" / name).rename(writing)
        writing.write_bytes(whole[: len(whole) // 2])

        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)
        writing.write_bytes(whole)
        os.replace(writing, tmp_path / "messages" / name)

        assert queue.get(timeout=1).payload == {"id": "whole"}
    assert not (tmp_path / "quarantine").exists()


def test_a_message_from_kombus_own_writer_is_read_too(tmp_path, queue_name):
    with connect(tmp_path, transport=STOCK) as stock:
        stock.SimpleQueue(queue_name).put({"id": "from a stock process"})
    with connect(tmp_path) as ours:
        assert ours.SimpleQueue(queue_name).get(timeout=1).payload == {"id": "from a stock process"}
