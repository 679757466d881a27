"""Expensive upload work runs under a limit on concurrency (429 beyond it) and time (503)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi import HTTPException

from artmem.web.limits import WorkLimit


def test_work_limit_refuses_beyond_its_slots_then_frees_them():
    limit = WorkLimit(slots=2, timeout_s=10)
    release = threading.Event()

    def slow():
        release.wait(10)
        return "done"

    async def scenario():
        first = [asyncio.ensure_future(limit.run(slow)) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(HTTPException) as busy:
            await limit.run(slow)
        release.set()
        results = await asyncio.gather(*first)
        after = await limit.run(lambda: "again")
        return busy.value, results, after

    busy, results, after = asyncio.run(scenario())
    assert busy.status_code == 429 and busy.headers["Retry-After"]
    assert results == ["done", "done"] and after == "again"


def test_work_limit_times_out_and_keeps_the_slot_until_the_work_ends():
    limit = WorkLimit(slots=1, timeout_s=0.3)
    release = threading.Event()

    async def scenario():
        with pytest.raises(HTTPException) as late:
            await limit.run(lambda: release.wait(10))
        with pytest.raises(HTTPException) as busy:  # the timed-out work still runs: its slot is held
            await limit.run(lambda: None)
        release.set()
        await asyncio.sleep(0.2)
        return late.value, busy.value, await limit.run(lambda: "free")

    late, busy, free = asyncio.run(scenario())
    assert late.status_code == 503 and busy.status_code == 429 and free == "free"
