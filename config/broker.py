"""The embedded broker: kombu's filesystem transport, made safe for several processes at once.

kombu's own transport creates a message file and then writes into it, while a consumer takes
any file it lists, locked or not: it can read one that is still empty, fail to decode it and
stop the worker (kombu issue #1551). Here a message is written under a name no reader lists and
renamed into place once whole; a consumer claims a file by renaming it, so only one of them can
have it; and a file that still cannot be read is moved aside with a warning, never fatal.
Files keep kombu's names and format, so a process on the stock transport can share the folder.
"""

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)

# Kombu's readers take only names ending in ".<queue>.msg"; these two never do.
WRITING_SUFFIX = ".writing"
CLAIMED_FOLDER = ".claimed"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Write the message whole under a name no reader takes, then rename it into place."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        try:
            _write_whole(path, str_to_bytes(dumps(payload)))
        except OSError as error:
            raise ChannelError(f"Cannot add file {path!r} to directory") from error

    def _get(self, queue):
        """The oldest message of `queue`, taken by this consumer alone."""
        wanted = f"{queue}.msg"
        # Made again if someone removed it meanwhile: renames into it would all fail.
        os.makedirs(self.claimed_folder, exist_ok=True)
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.claimed_folder, name)
            try:
                # Atomic: of two consumers renaming the same file, one wins and one is told
                # the file is gone.
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue
            message = self._read_claimed(claimed)
            if message is not None:
                return message
        raise Empty()

    def _read_claimed(self, path):
        """The message in a file this consumer claimed, or None if it is not one (the file is
        then in the quarantine folder)."""
        with open(path, "rb") as file:
            # A writer on the stock transport holds this lock while it writes.
            filesystem.lock(file, filesystem.LOCK_SH)
            try:
                content = file.read()
            finally:
                filesystem.unlock(file)
        try:
            message = loads(bytes_to_str(content))
        except ValueError:  # JSON that does not decode, or bytes that are not UTF-8
            message = None
        if not isinstance(message, dict):
            self._quarantine(path)
            return None
        if self.store_processed:
            shutil.move(path, self.processed_folder)
        else:
            os.remove(path)
        return message

    def _quarantine(self, path):
        os.makedirs(self.quarantine_folder, exist_ok=True)
        kept = shutil.move(path, self.quarantine_folder)
        logger.warning("unreadable broker message set aside in %s; the worker goes on", kept)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        # kombu creates an exchange's table by opening it for writing and only then locking
        # it: a reader between the two reads an empty table, and a second creator truncates
        # the first one's binding. An empty table put in place whole closes both gaps.
        table = self._exchange_file(exchange)
        if not table.exists():
            table.parent.mkdir(parents=True, exist_ok=True)
            _write_whole(str(table), b"[]", replace=False)
        super()._queue_bind(exchange, routing_key, pattern, queue)

    @cached_property
    def claimed_folder(self):
        # Inside the messages folder, so that claiming is a rename on one filesystem.
        return os.path.join(self.data_folder_in, CLAIMED_FOLDER)

    @cached_property
    def quarantine_folder(self):
        default = os.path.join(self.data_folder_in, "quarantine")
        return self.transport_options.get("quarantine_folder", default)


class Transport(filesystem.Transport):
    Channel = Channel


def _write_whole(path: str, content: bytes, *, replace: bool = True) -> None:
    """Put `content` at `path` all at once: a reader sees no file or the whole of it. With
    replace=False an existing file at `path` is left as it is."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}{WRITING_SUFFIX}")
    try:
        with open(temporary, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())  # whole on disk before any reader can see it
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):  # someone else's got there first
                os.link(temporary, path)  # unlike a rename, never replaces a file
    finally:
        Path(temporary).unlink(missing_ok=True)
