"""The hostile corpus against a LIVE server: uvicorn on 127.0.0.1 (random port, the settings of
`artmem serve`), spoken to over real sockets. Every case found by the reliability audit, plus the
traversal, header and multipart probes that already passed, so that no later change reopens one."""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from web_helpers import BAD_UPLOADS, TRAVERSAL_URLS, png_bytes

from artmem.data.pathnames import table_path

READ_TIMEOUT = 1.5  # the live server's request deadline (30 s in `artmem serve`)
MATH = r"$\frac{a$"
ODD_NAME = "style_0/a #1?x=y.jpg"  # '#' and '?' must be URL-encoded in the original-file link


@pytest.fixture(scope="module")
def live(web_coll, engine, tmp_path_factory):
    """A served explorer over a copy of the collection with hostile members: a symlink out of the
    root, a stray text file, a non-UTF-8 file name, '#'/'?' in a name, a mathtext label value."""
    import uvicorn

    from artmem.data.collection import Collection
    from artmem.web import app as web_app
    from artmem.web.app import create_app
    from artmem.web.limits import server_options
    from artmem.web.middleware import allowed_hosts

    tmp = tmp_path_factory.mktemp("live")
    root = tmp / "coll"
    shutil.copytree(web_coll.root, root)
    (tmp / "outside").mkdir()
    (tmp / "outside" / "secret.jpg").write_bytes(png_bytes((20, 20), fmt="JPEG"))
    os.symlink(tmp / "outside" / "secret.jpg", root / "style_0" / "escape.jpg")
    (root / "notes.txt").write_text("private")
    (root / ODD_NAME).write_bytes(png_bytes((30, 20), fmt="JPEG"))
    Image.new("RGB", (1, 3000), (90, 90, 90)).save(root / "style_0" / "line.png")  # 3000:1
    latin1 = os.fsencode(root / "style_1") + b"/caf\xe9.jpg"
    with open(latin1, "wb") as fh:
        fh.write(png_bytes((24, 24), (200, 10, 10), fmt="JPEG"))
    table = web_coll.table.copy()
    table.loc[table["style"] == "style_2", "style"] = MATH
    extra = pd.DataFrame([{"path": "style_0/escape.jpg", "style": "style_0"},
                          {"path": ODD_NAME, "style": "style_0"},
                          {"path": "style_0/line.png", "style": "style_0"},
                          {"path": table_path(os.fsdecode(b"style_1/caf\xe9.jpg")), "style": "style_1"}])
    coll = Collection(pd.concat([table, extra], ignore_index=True), str(root), "live")
    with pytest.MonkeyPatch.context() as mp:  # the served app's own Host rules (no `testserver`)
        mp.setattr(web_app, "allowed_hosts", allowed_hosts)
        app = create_app(coll, engine=engine, background=False, max_upload_mb=0.05)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **server_options(read_timeout=READ_TIMEOUT)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the live server did not start"
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        client.port = port
        client.ids = {p: i for i, p in enumerate(coll.paths)}
        yield client
    server.should_exit = True
    thread.join(15)
    sock.close()


def _upload(client, data: bytes, name="x.png", **kw):
    return client.post("/api/upload", files={"file": (name, data, "image/png")}, **kw)


def _raw(port: int, data: bytes, wait: float) -> tuple[bytes, float]:
    """Send raw bytes, then read until the server closes; returns (reply, seconds until closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    t0 = time.perf_counter()
    try:
        if data:
            s.sendall(data)
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    except TimeoutError:
        return reply, float("inf")
    finally:
        s.close()
    return reply, time.perf_counter() - t0


# ------------------------------------------------------------------ files and traversal


@pytest.mark.parametrize("url", TRAVERSAL_URLS)
def test_traversal_is_404(live, url):
    r = live.get(url)
    assert r.status_code == 404, url
    assert b"root:" not in r.content and b"private" not in r.content


def test_original_file_link_is_url_encoded(live):
    art = live.get(f"/api/artwork/{live.ids[ODD_NAME]}").json()
    assert art["original_url"] == "/files/" + quote(ODD_NAME)
    r = live.get(art["original_url"])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    page = live.get(f"/artwork/{live.ids[ODD_NAME]}", follow_redirects=True)  # old URLs redirect to /a/{key}
    assert page.status_code == 200 and quote(ODD_NAME).replace("#", "%23") in page.text


def test_non_utf8_file_name_is_served(live):
    rel = table_path(os.fsdecode(b"style_1/caf\xe9.jpg"))
    i = live.ids[rel]
    assert live.get(f"/api/artwork/{i}/thumb").status_code == 200
    art = live.get(f"/api/artwork/{i}").json()
    r = live.get(art["original_url"])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


def test_symlink_escape_refused_for_thumbs(live):
    i = live.ids["style_0/escape.jpg"]
    assert live.get(f"/api/artwork/{i}/thumb").status_code == 404


# ------------------------------------------------------------------ headers


def test_foreign_and_test_hosts_refused(live):
    for host in ("evil.example", "testserver"):
        assert live.get("/api/status", headers={"Host": host}).status_code == 400, host
    assert live.get("/api/status", headers={"Host": f"localhost:{live.port}"}).status_code == 200


def test_security_headers(live):
    r = live.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("headers", [
    {"Origin": "null"},  # a sandboxed iframe, a data: or file: page
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1:1"},  # another port is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Referer": "http://evil.example/page.html"},
])
def test_cross_site_upload_refused(live, headers):
    r = _upload(live, png_bytes(), params={"add": "true"}, headers=headers)
    assert r.status_code == 403 and "cross-site" in r.json()["error"]


def test_same_origin_and_non_browser_uploads_pass(live):
    own = {"Origin": f"http://127.0.0.1:{live.port}", "Sec-Fetch-Site": "same-origin"}
    assert _upload(live, png_bytes(), headers=own).status_code == 200
    assert _upload(live, png_bytes()).status_code == 200  # curl/scripts send no Origin


# ------------------------------------------------------------------ uploads


@pytest.mark.parametrize("payload,name,expect", BAD_UPLOADS)
def test_bad_uploads_are_422(live, payload, name, expect):
    r = _upload(live, payload, name=name)
    assert r.status_code == 422, r.text
    assert expect in r.json()["error"] and "Traceback" not in r.text


def test_oversized_upload_is_413(live):
    r = _upload(live, os.urandom(200_000))
    assert r.status_code == 413 and "limit is 0.05 MB" in r.json()["error"]


def test_chunked_oversized_upload_is_413(live):
    boundary = "xyzBOUNDARY"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(40):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    r = live.post("/api/upload", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "too large" in r.json()["error"]


def test_multipart_without_file_field_is_422(live):
    r = live.post("/api/upload", data={"add": "false"})
    assert r.status_code == 422 and "file" in r.json()["error"]


def test_narrow_images_map_quickly_or_422(live):
    """A 99-byte 1x3000 PNG made the map run > 300 s at 3.2 GB; 1x64 took 249 s."""
    def png(w, h):
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    t0 = time.perf_counter()
    up = _upload(live, png(1, 64), name="narrow.png").json()
    r = live.get(up["map_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size[0] >= 1
    line = _upload(live, png(1, 3000), name="line.png").json()
    r = live.get(line["map_url"])
    assert r.status_code == 422 and "line.png" in r.json()["error"] and "too elongated" in r.json()["error"]
    assert time.perf_counter() - t0 < 60


def test_elongated_collection_image_map_is_422_and_its_page_works(live):
    i = live.ids["style_0/line.png"]
    r = live.get(f"/api/artwork/{i}/map.png")
    assert r.status_code == 422 and "line.png" in r.json()["error"] and "too elongated" in r.json()["error"]
    assert live.get(f"/artwork/{i}", follow_redirects=True).status_code == 200
    assert live.get(f"/api/artwork/{i}/thumb").status_code == 200


def test_mathtext_label_pages(live):
    assert live.get("/categories", params={"column": "style"}).status_code == 200
    svg = live.get("/api/categories/boxplot.svg", params={"column": "style"})
    assert svg.status_code == 200 and "frac" in svg.text


# ------------------------------------------------------------------ slow and half-sent requests


def test_half_sent_request_is_timed_out(live):
    reply, took = _raw(live.port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow:", READ_TIMEOUT + 10)
    assert took < READ_TIMEOUT + 5 and reply.startswith(b"HTTP/1.1 408")


def test_silent_connection_is_closed(live):
    _, took = _raw(live.port, b"", READ_TIMEOUT + 10)
    assert took < READ_TIMEOUT + 5


def test_slow_body_is_timed_out_and_others_are_served(live):
    head = (b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 5000\r\n\r\n--b\r\n")
    box = {}
    t = threading.Thread(target=lambda: box.update(r=_raw(live.port, head, READ_TIMEOUT + 10)))
    t.start()
    assert live.get("/api/status").status_code == 200  # served while the slow body hangs
    t.join(READ_TIMEOUT + 15)
    reply, took = box["r"]
    assert took < READ_TIMEOUT + 5 and b" 5" not in reply[:12]  # closed without a 5xx


def test_complete_slow_request_within_the_deadline_is_answered(live):
    s = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    try:
        for part in (b"GET /api/status HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Connection: close\r\n\r\n"):
            s.sendall(part)
            time.sleep(READ_TIMEOUT / 5)
        assert s.recv(20).startswith(b"HTTP/1.1 200")
    finally:
        s.close()
