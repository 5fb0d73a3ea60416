"""Random bytes from the operating system, drawn a page at a time.

Every new event id takes 10 random bytes. Asking the kernel for each (``os.urandom``) is a system
call that also lets go of the GIL, and under load the thread that asked then waits to get it back
behind the group-commit writer; drawing 4 KiB at once makes that one call per ~400 ids. The bytes
are the kernel's CSPRNG output all the same. A forked child starts with an empty buffer, so it
never hands out bytes its parent handed out too.
"""

from __future__ import annotations

import os
import threading

_PAGE = 4096


class _Pool:
    __slots__ = ("buffer", "lock", "offset")

    def __init__(self) -> None:
        self.buffer = b""
        self.offset = 0
        self.lock = threading.Lock()

    def take(self, count: int) -> bytes:
        with self.lock:
            if self.offset + count > len(self.buffer):
                self.buffer, self.offset = os.urandom(max(_PAGE, count)), 0
            taken = self.buffer[self.offset : self.offset + count]
            self.offset += count
            return taken

    def forget(self) -> None:
        self.buffer, self.offset, self.lock = b"", 0, threading.Lock()


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the operating system's CSPRNG, each handed out once."""
    return _POOL.take(count)
