"""A process-wide change that several engines of one process rely on at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


class NestedHold:
    """``hold()`` makes the change (again: each holder's start-up sees the process as it is now)
    and counts a holder; the release of the last holder undoes it. A release without a hold is
    ignored, so shutting an engine down twice cannot undo another engine's hold.
    """

    def __init__(self, make: Callable[[], None], undo: Callable[[], None]) -> None:
        self._make, self._undo = make, undo
        self._lock = threading.Lock()
        #: Holds not released.
        self.holders = 0

    def hold(self) -> None:
        """Make the change and count one holder."""
        with self._lock:
            self._make()
            self.holders += 1

    def release(self) -> None:
        """Drop one hold; the last one undoes the change."""
        with self._lock:
            if self.holders == 0:
                return
            self.holders -= 1
            if self.holders == 0:
                self._undo()
