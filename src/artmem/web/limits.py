"""Limits that keep one client from stalling the explorer for the others.

- `WorkLimit`: expensive work for uploads (decode + model, live maps) runs at most `slots` at a
  time and answers within `timeout_s`; a request beyond the slots gets 429 at once, one past its
  time 503 (its thread finishes in the background and holds its slot until then, so the limit on
  concurrent work holds even then).
- `TimedH11Protocol`: uvicorn's h11 protocol with a deadline for reading a request. uvicorn only
  times out idle keep-alive connections; a client that opens a connection and sends half a
  request (or a body one byte at a time) was held for ever (1,500 such connections in the audit).
  Here a request must arrive complete, head and body, within `read_timeout` seconds of its first
  byte (or of the connection opening); else the server answers 408 and closes the connection.
- `server_options()`: the uvicorn settings `artmem serve` uses (and the live-server tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import h11
from fastapi import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

READ_TIMEOUT_S = 30.0  # head and body of one request; a 20 MB upload needs > 0.7 MB/s
KEEP_ALIVE_S = 5
UPLOAD_SLOTS = 2
UPLOAD_TIMEOUT_S = 60.0


class WorkLimit:
    """At most `slots` calls of expensive work at once, each answered within `timeout_s`."""

    def __init__(self, slots: int = UPLOAD_SLOTS, timeout_s: float = UPLOAD_TIMEOUT_S):
        self.slots = slots
        self.timeout_s = timeout_s
        self._free = threading.BoundedSemaphore(slots)

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        if not self._free.acquire(blocking=False):
            raise HTTPException(429, f"the server is busy analysing {self.slots} other uploads; retry in a "
                                "few seconds", headers={"Retry-After": "5"})

        def work():
            try:
                return fn(*args)
            finally:
                self._free.release()

        future = asyncio.get_running_loop().run_in_executor(None, work)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise HTTPException(503, f"the analysis took longer than {self.timeout_s:g} s; retry later",
                                headers={"Retry-After": "30"}) from None


_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: 46\r\n\r\n"
                     b'{"error": "the request was not sent in time"}\n')


class TimedH11Protocol(H11Protocol):
    """H11Protocol with a deadline for receiving each request completely (see the module doc)."""

    read_timeout: float = READ_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._read_deadline = None
        self._arm()

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def data_received(self, data: bytes) -> None:
        self._arm()  # the first byte of a request (after a keep-alive pause) starts its clock
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the whole request is in: the app's own time is not limited here

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            return
        if self.conn.their_state == h11.IDLE and not self.conn.trailing_data[0] and self.cycle is not None:
            return  # between requests: uvicorn's keep-alive timeout is in charge
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def timed_protocol(read_timeout: float) -> type[TimedH11Protocol]:
    """A TimedH11Protocol class with its own read deadline (uvicorn takes a class, not an instance)."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout": float(read_timeout)})


def server_options(read_timeout: float = READ_TIMEOUT_S, keep_alive: int = KEEP_ALIVE_S) -> dict:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` besides app, host and port."""
    return {"http": timed_protocol(read_timeout), "timeout_keep_alive": keep_alive,
            "log_level": "warning", "access_log": False}
