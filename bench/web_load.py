"""Load test of the web explorer: N concurrent clients (asyncio + httpx) on loopback for a bounded time.

Reports requests/s, p50/p99 latency (overall and per request kind) and the count of non-2xx answers
(target: zero 5xx; the script exits 1 if any 5xx or transport error happened).

By default it starts its own server (`python -m artmem.cli serve`, in a subprocess on a free
127.0.0.1 port) over a synthetic collection with the tiny test model, waits until the collection
is scored, then runs the clients. Point it at a running server with --url instead, or at your own
collection / model with --collection / --results / --model.

    .venv/bin/python bench/web_load.py                    # 50 clients, 20 s, synthetic 120 images
    .venv/bin/python bench/web_load.py --clients 100 --seconds 60 --collection demo_data --model resmem
    .venv/bin/python bench/web_load.py --url http://127.0.0.1:8000
    .venv/bin/python bench/web_load.py --mixed             # + a run where 5 of the 50 clients are hostile
    .venv/bin/python bench/web_load.py --mixed --small     # the same at a size a shared laptop takes

`--rows N` serves a collection of N rows written directly as Parquet (`web_rows.py`: only 200
image files exist; scores in shards) with no model, and reports the server's start-to-ready time,
`--pages` uncached filtered + sorted grid pages one at a time (p50/p99), then the load of the
clients (grid pages with varied filters and sorts, artwork pages, thumbnails of the existing
images, categories) and the server's peak RSS over the whole run:

    .venv/bin/python bench/web_load.py --rows 1000000 --clients 20 --seconds 30
    nice .venv/bin/python bench/web_load.py --rows 10000000 --clients 0 --rows-dir /tmp/rows10m

`--mixed` runs the load twice on the same server: clean, then with `--hostile` of the clients
sending hostile requests (narrow and extreme-aspect images whose maps they fetch, uploads from a
foreign origin, half-sent requests and bodies trickled slower than the server's read deadline).
Targets (exit 1 if one is missed): the other clients' p99 within 2x of the clean run's, the
server's RSS under 2 GB, zero 5xx in either run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np

# request kind -> weight (a browsing mix: pages, JSON, thumbnails; a few uploads)
MIX = {
    "grid_api": 20, "grid_html": 10, "artwork_api": 15, "artwork_html": 8, "thumb": 35,
    "image": 5, "categories_api": 3, "status": 2, "upload": 2,
}
# --rows: no model (no uploads), thumbnails only of the images that exist, grids filtered and sorted
ROWS_MIX = {"grid_api": 30, "grid_html": 10, "artwork_api": 20, "artwork_html": 8, "thumb": 27,
            "categories_api": 3, "status": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload_payload() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def start_server(args, port: int) -> subprocess.Popen:
    collection = args.collection
    if collection is None:
        from artmem.data.synthetic import make_synthetic_collection

        tmp = Path(tempfile.mkdtemp(prefix="artmem_webload_"))
        make_synthetic_collection(tmp / "coll", n_styles=4, n_genres=3, per_class=args.per_class,
                                  size=args.size, seed=0)
        collection = str(tmp / "coll")
    cmd = [sys.executable, "-m", "artmem.cli", "-q", "serve", str(collection), "--model", args.model,
           "--port", str(port), "--device", args.device]
    if args.results:
        cmd += ["--results", args.results]
    print("server:", " ".join(cmd), file=sys.stderr)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr)


def wait_ready(base: str, proc: subprocess.Popen | None, timeout: float) -> dict:
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            status = httpx.get(base + "/api/status", timeout=5).json()
            if status["indexing"]["state"] in ("complete", "idle", "failed", "stopped"):
                return status
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout:.0f} s (last status: {status})")


async def one_client(client: httpx.AsyncClient, deadline: float, n_ids: int, payload: bytes,
                     rng: random.Random, out: list, rows_mode: bool = False, n_thumbs: int = 0) -> None:
    from web_rows import grid_params

    mix = ROWS_MIX if rows_mode else MIX
    kinds, weights = list(mix), list(mix.values())
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        i = rng.randrange(n_ids)
        t0 = time.perf_counter()
        try:
            if kind == "grid_api":
                params = grid_params(rng) if rows_mode else {"page": rng.randint(1, 3), "per_page": 48,
                                                              "order": rng.choice(["asc", "desc"])}
                r = await client.get("/api/collection", params=params)
            elif kind == "grid_html":
                r = await client.get("/", params=grid_params(rng) if rows_mode else {"page": rng.randint(1, 3)})
            elif kind == "artwork_api":
                r = await client.get(f"/api/artwork/{i}")
            elif kind == "artwork_html":
                r = await client.get(f"/artwork/{i}")
            elif kind == "thumb":
                j = rng.randrange(n_thumbs) if rows_mode else i
                r = await client.get(f"/api/artwork/{j}/thumb", params={"size": 256})
            elif kind == "image":
                r = await client.get(f"/api/artwork/{i}/image", params={"size": 1024})
            elif kind == "categories_api":
                r = await client.get("/api/categories")
            elif kind == "status":
                r = await client.get("/api/status")
            else:
                r = await client.post("/api/upload", files={"file": ("bench.jpg", payload, "image/jpeg")})
            await r.aread()
            status = r.status_code
        except httpx.HTTPError as exc:
            status = f"transport:{type(exc).__name__}"
        out.append((kind, status, time.perf_counter() - t0))


def narrow_png(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(w * h).random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


HOSTILE_KINDS = ("narrow_map", "foreign_origin", "half_sent", "slow_body")


async def _raw_request(base: str, head: bytes, trickle: bytes, pause: float, give_up: float) -> str:
    """Send `head`, then `trickle` one byte per `pause` s; the status line the server answers
    (or 'closed' when it just closes the connection)."""
    host, port = base.split("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()

        async def feed():
            for b in trickle:
                await asyncio.sleep(pause)
                writer.write(bytes([b]))
                await writer.drain()

        feeder = asyncio.ensure_future(feed())
        try:
            line = await asyncio.wait_for(reader.readline(), give_up)
        finally:
            feeder.cancel()
        parts = line.split()
        return parts[1].decode() if len(parts) > 1 else "closed"
    except (ConnectionError, OSError):
        return "closed"
    finally:
        writer.close()


async def hostile_client(client: httpx.AsyncClient, base: str, deadline: float, rng: random.Random,
                         out: list, max_held: int = 20) -> None:
    """One hostile client: cycles through HOSTILE_KINDS until the deadline. Half-sent requests and
    trickled bodies are left open in the background (up to `max_held` at a time, as a slowloris
    does); the server must cut them at its read deadline while serving everyone else."""
    shapes = [(1, 64), (1, 3000), (2, 600), (3000, 1), (7, 900)]
    images = {wh: narrow_png(*wh) for wh in shapes}
    held: set[asyncio.Task] = set()
    k = rng.randrange(len(HOSTILE_KINDS))

    def record(kind: str, t0: float):
        def done(task: asyncio.Task) -> None:
            held.discard(task)
            if not task.cancelled():
                out.append((kind, task.result(), time.perf_counter() - t0))
        return done

    while time.perf_counter() < deadline:
        kind = HOSTILE_KINDS[k % len(HOSTILE_KINDS)]
        k += 1
        t0 = time.perf_counter()
        if kind in ("half_sent", "slow_body"):
            if len(held) >= max_held:
                await asyncio.sleep(0.05)
                continue
            if kind == "half_sent":
                coro = _raw_request(base, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A:", b"", 0, 300)
            else:
                head = (b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
                coro = _raw_request(base, head, b"x" * 10_000, pause=0.5, give_up=300)
            task = asyncio.ensure_future(coro)
            held.add(task)
            task.add_done_callback(record(kind, t0))
            continue
        try:
            if kind == "narrow_map":
                wh = rng.choice(shapes)
                r = await client.post("/api/upload", files={"file": (f"narrow_{wh[0]}x{wh[1]}.png", images[wh],
                                                                     "image/png")})
                status = r.status_code
                if status == 200:
                    r = await client.get(r.json()["map_url"])
                    status = r.status_code
            else:  # foreign_origin
                r = await client.post("/api/upload", params={"add": "true"}, headers={"Origin": "null"},
                                      files={"file": ("x.png", images[(1, 64)], "image/png")})
                status = r.status_code
        except httpx.HTTPError as exc:
            status = f"transport:{type(exc).__name__}"
        out.append((kind, status, time.perf_counter() - t0))
    out.append(("still_held_at_end", len(held), 0.0))
    for task in list(held):
        task.cancel()


async def run_load(base: str, clients: int, seconds: float, n_ids: int, seed: int,
                   hostile: int = 0, rows_mode: bool = False, n_thumbs: int = 0) -> tuple[list, list, float]:
    """(records of the ordinary clients, records of the hostile ones, elapsed seconds)."""
    payload = upload_payload()
    out: list = []
    bad: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client, \
            httpx.AsyncClient(base_url=base, timeout=120) as hostile_http:
        t0 = time.perf_counter()
        deadline = t0 + seconds
        bad_tasks = [asyncio.ensure_future(hostile_client(hostile_http, base, deadline,
                                                          random.Random(seed + 1000 + k), bad))
                     for k in range(hostile)]
        await asyncio.gather(*(one_client(client, deadline, n_ids, payload, random.Random(seed + k), out,
                                          rows_mode, n_thumbs)
                               for k in range(clients - hostile)))
        elapsed = time.perf_counter() - t0  # the ordinary clients' time
        await asyncio.gather(*bad_tasks)
    return out, bad, elapsed


class RssSampler:
    """Peak resident memory of a process (Linux /proc), sampled every 0.2 s in a thread."""

    def __init__(self, pid: int | None):
        import threading

        self.pid, self.peak_mb = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            except OSError:
                return

    def __enter__(self):
        if self.pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): the cost of the requests, which
    other jobs on a shared machine do not inflate the way they inflate latencies."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(records: list, elapsed: float) -> dict:
    lat = np.array([r[2] for r in records]) * 1000
    statuses = Counter(str(r[1]) for r in records)
    per_kind = defaultdict(list)
    for kind, _, dt in records:
        per_kind[kind].append(dt * 1000)
    non2xx = sum(n for s, n in statuses.items() if not (s.isdigit() and 200 <= int(s) < 300))
    fivexx = sum(n for s, n in statuses.items() if s.startswith("5") or s.startswith("transport"))
    return {
        "requests": len(records), "seconds": round(elapsed, 2),
        "requests_per_s": round(len(records) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "non_2xx": non2xx, "5xx_or_transport_errors": fivexx, "statuses": dict(statuses),
        "per_kind": {k: {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 1),
                         "p99_ms": round(float(np.percentile(v, 99)), 1)} for k, v in sorted(per_kind.items())},
    }


def _print_summary(title: str, summary: dict, clients: int) -> None:
    print(f"{title}: {summary['requests']} requests in {summary['seconds']} s by {clients} clients: "
          f"{summary['requests_per_s']} req/s, p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
          f"non-2xx {summary['non_2xx']}, 5xx/transport errors {summary['5xx_or_transport_errors']}")
    for kind, s in summary["per_kind"].items():
        print(f"  {kind:15s} n={s['n']:6d}  p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms")


def _hostile_summary(records: list) -> dict:
    held = sum(s for k, s, _ in records if k == "still_held_at_end")
    records = [r for r in records if r[0] != "still_held_at_end"]
    statuses = Counter(f"{k}:{s}" for k, s, _ in records)
    fivexx = sum(n for key, n in statuses.items() if key.split(":", 1)[1].startswith(("5", "transport")))
    return {"requests": len(records), "statuses": dict(sorted(statuses.items())), "5xx_or_transport_errors": fivexx,
            "held_open_at_end": held}


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_rows(args) -> int:
    """--rows N: start-to-ready (first start, which writes the memory-mapped copy, and a restart),
    uncached filtered + sorted pages, then the clients' load; the server's peak RSS throughout."""
    from web_rows import measure_pages, write_rows_collection

    folder = Path(args.rows_dir or tempfile.mkdtemp(prefix="artmem_rows_"))
    if not (folder / "collection.parquet").exists():
        t0 = time.time()
        write_rows_collection(folder, args.rows, seed=args.seed)
        print(f"wrote {args.rows} rows in {time.time() - t0:.1f} s to {folder}", file=sys.stderr)
    args.collection, args.results, args.model = str(folder), str(folder / "results"), "none"
    out: dict = {"rows": args.rows, "clients": args.clients, "cpus": os.cpu_count()}
    for run in ("first start", "restart"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        t0 = time.time()
        proc = start_server(args, port)
        try:
            with RssSampler(proc.pid) as rss:
                status = wait_ready(base, proc, timeout=900)
                ready = time.time() - t0
                rss_ready, cpu_ready = rss.peak_mb, cpu_seconds(proc.pid)
                print(f"{run}: ready in {ready:.1f} s ({cpu_ready:.1f} CPU-s; {status['collection']['images']} "
                      f"rows), RSS peak {rss_ready:.0f} MB", file=sys.stderr)
                out[run] = {"ready_s": round(ready, 1), "server_cpu_s_at_ready": round(cpu_ready, 1),
                            "rss_peak_at_ready_mb": round(rss_ready)}
                if run == "restart":
                    break
                cpu0 = cpu_seconds(proc.pid)
                pages = measure_pages(base, args.pages, seed=args.seed)
                pages["server_cpu_ms_per_page"] = round(1000 * (cpu_seconds(proc.pid) - cpu0) / args.pages, 2)
                print(f"uncached filtered+sorted grid pages: {pages}", file=sys.stderr, flush=True)
                out["pages"] = pages
                if args.clients:
                    cpu0 = cpu_seconds(proc.pid)
                    records, _, elapsed = asyncio.run(run_load(base, args.clients, args.seconds, args.rows,
                                                               args.seed, rows_mode=True, n_thumbs=200))
                    out["load"] = summarise(records, elapsed)
                    out["load"]["server_cpu_ms_per_request"] = round(
                        1000 * (cpu_seconds(proc.pid) - cpu0) / max(1, len(records)), 2)
                    _print_summary(f"{args.clients} clients", out["load"], args.clients)
            out[run]["rss_peak_mb"] = round(rss.peak_mb)
        finally:
            _stop(proc)
    checks = {"ready < 15 s (first start)": out["first start"]["ready_s"] < 15,
              "uncached filtered+sorted page p50 < 200 ms": out["pages"]["p50_ms"] < 200,
              "server RSS < 2 GB": out["first start"]["rss_peak_mb"] < 2048}
    if "load" in out:
        checks[f"p99 < 300 ms with {args.clients} clients"] = out["load"]["p99_ms"] < 300
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    out["checks"] = checks
    print(json.dumps(out, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 1 if out.get("load", {}).get("5xx_or_transport_errors") else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an already running explorer (default: start one)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=None, help="length of each run (default 20; 8 with --small)")
    p.add_argument("--collection", help="collection for the self-started server (default: synthetic)")
    p.add_argument("--results", help="analysis folder for the self-started server")
    p.add_argument("--model", default="tiny_test", help="memorability model of the self-started server")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-class", type=int, default=10, help="synthetic images per style x genre (12 classes)")
    p.add_argument("--size", type=int, default=256, help="synthetic image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the summary to this JSON file")
    p.add_argument("--mixed", action="store_true",
                   help="run clean, then with --hostile of the clients hostile; compare (see above)")
    p.add_argument("--hostile", type=int, default=None, help="hostile clients in the mixed run (default: 10%%)")
    p.add_argument("--small", action="store_true",
                   help="a small run for a shared machine: 10 clients, 8 s (unless --seconds), 36 images of 96 px")
    p.add_argument("--rows", type=int, help="serve N rows written directly as Parquet (see above)")
    p.add_argument("--rows-dir", help="folder of the --rows collection (reused when it exists; default: a "
                   "new temporary folder)")
    p.add_argument("--pages", type=int, default=200, help="uncached grid pages measured with --rows")
    args = p.parse_args(argv)
    if args.rows:
        args.seconds = args.seconds or 20.0
        return run_rows(args)
    if args.small:
        args.clients, args.per_class, args.size = 10, 3, 96
    args.seconds = args.seconds or (8.0 if args.small else 20.0)
    hostile = args.hostile if args.hostile is not None else max(1, args.clients // 10)

    proc = None
    base = args.url
    if base is None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(args, port)
    try:
        t0 = time.time()
        status = wait_ready(base.rstrip("/"), proc, timeout=600)
        n_ids = status["collection"]["images"]
        print(f"server ready in {time.time() - t0:.1f} s: {n_ids} images, model {status['model']}; "
              f"{args.clients} clients for {args.seconds:g} s ...", file=sys.stderr)
        with RssSampler(proc.pid if proc else None) as rss_clean:
            records, _, elapsed = asyncio.run(run_load(base.rstrip("/"), args.clients, args.seconds, n_ids,
                                                       args.seed))
        mixed = None
        if args.mixed:
            print(f"mixed run: {hostile} of {args.clients} clients hostile ...", file=sys.stderr)
            with RssSampler(proc.pid if proc else None) as rss_mixed:
                m_records, m_bad, m_elapsed = asyncio.run(run_load(base.rstrip("/"), args.clients, args.seconds,
                                                                   n_ids, args.seed + 1, hostile=hostile))
            mixed = (m_records, m_bad, m_elapsed, rss_mixed.peak_mb)
    finally:
        if proc is not None:
            _stop(proc)
    summary = summarise(records, elapsed)
    summary.update(clients=args.clients, images=n_ids, model=status["model"], cpus=os.cpu_count(),
                   server_rss_peak_mb=round(rss_clean.peak_mb, 1) if proc else None)
    _print_summary("clean run", summary, args.clients)
    failed = bool(summary["5xx_or_transport_errors"])
    if mixed is not None:
        m_records, m_bad, m_elapsed, rss_mb = mixed
        ms = summarise(m_records, m_elapsed)
        hs = _hostile_summary(m_bad)
        ratio = ms["p99_ms"] / max(summary["p99_ms"], 1e-9)
        _print_summary(f"mixed run, the {args.clients - hostile} ordinary clients", ms, args.clients - hostile)
        print(f"  hostile clients ({hostile}): {hs['requests']} requests answered, 5xx/transport errors "
              f"{hs['5xx_or_transport_errors']}, {hs['held_open_at_end']} slow ones still open at the end; "
              f"{hs['statuses']}")
        checks = {"p99 within 2x of the clean run": ratio <= 2.0,
                  "server RSS < 2 GB": proc is None or rss_mb < 2048,
                  "zero 5xx": not (summary["5xx_or_transport_errors"] or ms["5xx_or_transport_errors"]
                                   or hs["5xx_or_transport_errors"])}
        print(f"p99 ordinary clients: {ms['p99_ms']} ms mixed vs {summary['p99_ms']} ms clean = {ratio:.2f}x; "
              f"server RSS peak {rss_mb:.0f} MB (clean run {rss_clean.peak_mb:.0f} MB)")
        for name, ok in checks.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
        failed = failed or not all(checks.values())
        summary["mixed"] = {**ms, "hostile_clients": hostile, "hostile": hs, "p99_ratio": round(ratio, 2),
                            "server_rss_peak_mb": round(rss_mb, 1), "checks": checks}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
