"""Grid pages from kept sort orders and label codes, instead of a DuckDB top-N per request.

A grid page is "rows matching these label filters, sorted by this key, rows k..k+48". DuckDB
answers it by scanning, filtering and keeping a top-N heap on every request (1 M rows: ~12 ms
of CPU; 10 M rows: ~130 ms). Under many concurrent users that CPU is the server's limit, so
the explorer keeps, per sort key and direction, the row ids in sorted order (4 bytes a row,
computed once by Arrow's stable sort: missing values last, ties in id order, exactly as the
SQL query sorts), and per label column the dictionary code of every row (1-4 bytes a row).
A page is then the first ids in that order whose codes match the filters, looked up along the
order until the page is full: well under a millisecond for an early page of 1 M rows.

Orders and codes are built in one background thread on first use; until one is ready, and for
text searches (substring of the path or of any label), DuckDB answers, so no request waits for
a sort of 10 M values. What is kept is bounded by `budget_bytes` (least recently used goes).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

BUDGET_BYTES = 512 << 20  # sort orders + label codes kept per server (10 M rows: 40 MB an order)
MAX_KEPT = 64  # entries: orders of earlier data versions (scores still coming in) age out
FIRST_STEP = 1 << 16  # ids examined in the first step of a page; doubled each further step


def sort_order(values: pa.ChunkedArray | pa.Array, order: str) -> np.ndarray:
    """Row ids sorted by `values` (one per row, null = missing) ascending or descending,
    missing values last, ties in id order (Arrow's sort is stable)."""
    direction = "ascending" if order == "asc" else "descending"
    ids = pc.sort_indices(pa.table({"v": values}), sort_keys=[("v", direction, "at_end")]).to_numpy()
    return ids.astype(np.int32 if len(ids) < 2**31 else np.int64)


def label_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, dict[str, int]]:
    """(code of every row, -1 where missing; value -> code) of a label column of text, plain or
    dictionary-encoded. Codes take the smallest integer type that holds them."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    column = column.unify_dictionaries()  # every chunk on the same dictionary
    values = column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.string())
    n_values = len(values)
    dtype = np.int8 if n_values < 2**7 else np.int16 if n_values < 2**15 else np.int32
    codes = np.empty(len(column), dtype=dtype)
    start = 0
    for chunk in column.chunks:
        idx = chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        codes[start:start + len(idx)] = idx
        start += len(idx)
    lookup = {str(v): i for i, v in enumerate(values.cast(pa.string()).to_pylist()) if v is not None}
    return codes, lookup


def first_matches(order: np.ndarray, keep: Callable[[np.ndarray], np.ndarray] | None, offset: int,
                  limit: int) -> np.ndarray:
    """Ids `offset`..`offset+limit` of `order` restricted to the ids that `keep` (ids -> bool per
    id) accepts; walks the order in doubling steps and stops once the page is full, so that a
    first page looks at a few thousand ids, not at every row."""
    if keep is None:
        return order[offset:offset + limit].astype(np.int64)
    need, found, got, i, step = offset + limit, [], 0, 0, FIRST_STEP
    while got < need and i < len(order):
        part = order[i:i + step]
        hit = part[keep(part)]
        found.append(hit)
        got += len(hit)
        i += step
        step *= 2
    ids = np.concatenate(found) if found else np.empty(0, dtype=order.dtype)
    return ids[offset:need].astype(np.int64)


class Orderings:
    """Sort orders and label codes of one row table, built in the background, LRU-bounded.

    Builds run one at a time in a worker thread started when there is work and ended when there
    is none (an idle server holds no thread). At interpreter exit the queued builds are dropped
    and the one running is waited for (`_stop_all`): a daemon thread left inside Arrow's sort
    while Python finalises crashed the process now and then (SIGSEGV at exit)."""

    def __init__(self, budget_bytes: int = BUDGET_BYTES, background: bool = True):
        self.budget = budget_bytes
        self.background = background
        self._kept: OrderedDict[tuple, object] = OrderedDict()
        self._building: set[tuple] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the queue has run dry
        self._jobs: deque = deque()
        self._worker: threading.Thread | None = None
        self._closed = False
        _LIVE.add(self)

    def get(self, key: tuple, build: Callable[[], object], nbytes: int):
        """The value kept under `key`, or None while it is being built (the build starts on the
        first call; without a background thread it is built here). `nbytes` is the expected
        size: a value larger than the whole budget is never built (always None)."""
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None:
                self._kept.move_to_end(key)
                return hit[0]
            if nbytes > self.budget or key in self._building or self._closed:
                return None
            self._building.add(key)
            if self.background:
                self._jobs.append((key, build, nbytes))
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name="artmem-orderings", daemon=True)
                    self._worker.start()
                return None
        return self._build(key, build, nbytes)

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._jobs:
                    self._building.difference_update(k for k, _, _ in self._jobs)
                    self._jobs.clear()
                    self._worker = None
                    self._idle.notify_all()
                    return
                job = self._jobs.popleft()
            self._build(*job)

    def _build(self, key: tuple, build: Callable[[], object], nbytes: int):
        try:
            value = build()
        except Exception:  # a failed build leaves DuckDB answering; the reason goes to the log
            logger.exception("explorer: could not prepare %s", key)
            value = None
        with self._lock:
            self._building.discard(key)
            if value is not None:
                self._kept[key] = (value, getattr(value, "nbytes", nbytes))
                while len(self._kept) > MAX_KEPT or sum(b for _, b in self._kept.values()) > self.budget:
                    self._kept.popitem(last=False)
        return value

    def wait(self) -> None:
        """Until every build started so far has finished (tests, benchmarks)."""
        with self._lock:
            while self._worker is not None:
                self._idle.wait()

    def stop(self) -> None:
        """Drop the queued builds and wait for the running one (at exit)."""
        with self._lock:
            self._closed = True
        self.wait()

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


_LIVE: weakref.WeakSet[Orderings] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for orderings in list(_LIVE):
        orderings.stop()
