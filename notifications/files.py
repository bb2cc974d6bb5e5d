"""Files the engine writes for others to read (the outbox's messages, the weekly reports)."""

import os
import uuid
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path` and rename it over `path`, so a reader never
    sees half a file. The temporary name is unique (two threads may write the same file), and
    the file gets the process's usual permissions: web and workers may run as different users
    over a shared volume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(partial, "xb") as out:
            out.write(data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
