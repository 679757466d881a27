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
    cmd = [sys.executable, "-m", "artmem.cli", "-q", "serve", collection, "--model", args.model,
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
                     rng: random.Random, out: list) -> None:
    kinds, weights = list(MIX), list(MIX.values())
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        i = rng.randrange(n_ids)
        t0 = time.perf_counter()
        try:
            if kind == "grid_api":
                r = await client.get("/api/collection", params={"page": rng.randint(1, 3), "per_page": 48,
                                                                 "order": rng.choice(["asc", "desc"])})
            elif kind == "grid_html":
                r = await client.get("/", params={"page": rng.randint(1, 3)})
            elif kind == "artwork_api":
                r = await client.get(f"/api/artwork/{i}")
            elif kind == "artwork_html":
                r = await client.get(f"/artwork/{i}")
            elif kind == "thumb":
                r = await client.get(f"/api/artwork/{i}/thumb", params={"size": 256})
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


async def run_load(base: str, clients: int, seconds: float, n_ids: int, seed: int) -> tuple[list, float]:
    payload = upload_payload()
    out: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(one_client(client, deadline, n_ids, payload, random.Random(seed + k), out)
                               for k in range(clients)))
        elapsed = time.perf_counter() - t0
    return out, elapsed


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an already running explorer (default: start one)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--collection", help="collection for the self-started server (default: synthetic)")
    p.add_argument("--results", help="analysis folder for the self-started server")
    p.add_argument("--model", default="tiny_test", help="memorability model of the self-started server")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-class", type=int, default=10, help="synthetic images per style x genre (12 classes)")
    p.add_argument("--size", type=int, default=256, help="synthetic image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the summary to this JSON file")
    args = p.parse_args(argv)

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
        records, elapsed = asyncio.run(run_load(base.rstrip("/"), args.clients, args.seconds, n_ids, args.seed))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    summary = summarise(records, elapsed)
    summary.update(clients=args.clients, images=n_ids, model=status["model"], cpus=os.cpu_count())
    print(f"{summary['requests']} requests in {summary['seconds']} s by {args.clients} clients: "
          f"{summary['requests_per_s']} req/s, p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
          f"non-2xx {summary['non_2xx']}, 5xx/transport errors {summary['5xx_or_transport_errors']}")
    for kind, s in summary["per_kind"].items():
        print(f"  {kind:15s} n={s['n']:6d}  p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["5xx_or_transport_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
