"""A video writer whose encoding runs in a thread of its own, so the caller's GPU loop does not wait for it.

`BackgroundWriter(writer)` takes the chunks a writer's `write` would take and hands them to one worker
thread, in order (PyAV releases the GIL while it encodes, so the caller keeps running). At most
`max_pending` chunks wait; a writer error is raised by the next `write` or by `close`, which waits for
every chunk to be written and then closes the file.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol

_CLOSE = object()


class ChunkWriter(Protocol):
    def write(self, chunk: Any) -> None: ...

    def close(self) -> None: ...


class BackgroundWriter:
    def __init__(self, writer: ChunkWriter, max_pending: int = 4) -> None:
        self.writer = writer
        self._chunks: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"writer-{type(writer).__name__}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not _CLOSE:
            if self._error is None:  # after a failure the rest is drained, not written
                try:
                    self.writer.write(chunk)
                except BaseException as error:
                    self._error = error

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, chunk: Any) -> None:
        self._raise_failure()
        self._chunks.put(chunk)

    def close(self) -> None:
        """Wait for the pending chunks, close the file; raises the first writer error, if any."""
        if self._closed:
            return
        self._closed = True
        self._chunks.put(_CLOSE)
        self._thread.join()
        try:
            self.writer.close()
        finally:
            self._raise_failure()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
