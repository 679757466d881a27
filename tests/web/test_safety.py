"""Hostile inputs: path traversal, oversized uploads, non-images, bombs, foreign hosts, crashes."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient
from web_helpers import BAD_UPLOADS, TRAVERSAL_URLS, png_bytes

from artmem.web.paths import safe_join


@pytest.fixture
def hostile(coll_copy, engine, tmp_path):
    """An app over a collection copy that holds a symlink escaping the root and a stray text file."""
    import pandas as pd

    from artmem.data.collection import Collection
    from artmem.web.app import create_app

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(png_bytes((20, 20), fmt="JPEG"))
    root = coll_copy.root
    os.symlink(outside / "secret.jpg", os.path.join(root, "style_0", "escape.jpg"))
    (tmp_path / "coll" / "notes.txt").write_text("private")
    table = pd.concat([coll_copy.table, pd.DataFrame([{"path": "style_0/escape.jpg", "style": "style_0"}])],
                      ignore_index=True)
    coll = Collection(table, root, "hostile")
    app = create_app(coll, engine=engine, background=False, max_upload_mb=0.05)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.escape_id = len(table) - 1
        yield c


@pytest.mark.parametrize("url", TRAVERSAL_URLS)
def test_path_traversal_is_404(hostile, url):
    r = hostile.get(url)
    assert r.status_code == 404, url
    assert b"root:" not in r.content and b"private" not in r.content


def test_collection_file_is_served(hostile):
    r = hostile.get("/files/style_0/portrait_000.jpg")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


def test_symlink_escape_also_refused_for_thumbs(hostile):
    assert hostile.get(f"/api/artwork/{hostile.escape_id}/thumb").status_code == 404
    assert hostile.get(f"/api/artwork/{hostile.escape_id}/image").status_code == 404


def test_safe_join_unit(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "out.jpg").write_bytes(b"y")
    os.symlink(tmp_path / "out.jpg", root / "a" / "link.jpg")
    os.symlink(root / "a" / "x.jpg", root / "a" / "inner.jpg")
    assert safe_join(root, "a/x.jpg") == (root / "a" / "x.jpg").resolve()
    assert safe_join(root, "a/inner.jpg") == (root / "a" / "x.jpg").resolve()  # a symlink staying inside
    for bad in ("../out.jpg", "a/../../out.jpg", "/etc/passwd", str(tmp_path / "out.jpg"), "a/link.jpg",
                "", "a", "a/x.jpg\x00", "C:/x", "a\\..\\..\\out.jpg"):
        assert safe_join(root, bad) is None, bad


def _upload(client, data: bytes, name="x.png", ctype="image/png", **kw):
    return client.post("/api/upload", files={"file": (name, data, ctype)}, **kw)


def test_upload_too_large_is_413(hostile):
    big = os.urandom(200_000)
    r = _upload(hostile, big)
    assert r.status_code == 413 and "limit is 0.05 MB" in r.json()["error"]


def test_chunked_upload_too_large_is_413(hostile):
    """No Content-Length (chunked): the body is counted as it streams and cut at the limit."""
    boundary = "xyzBOUNDARY"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(40):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    r = hostile.post("/api/upload", content=body(),
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "too large" in r.json()["error"]


@pytest.mark.parametrize("payload,name,expect", BAD_UPLOADS)
def test_bad_uploads_are_clear_422(hostile, payload, name, expect):
    r = _upload(hostile, payload, name=name)
    assert r.status_code == 422, r.text
    msg = r.json()["error"]
    assert expect in msg and name in msg
    assert "Traceback" not in r.text


def test_type_is_checked_by_decoding_not_extension(hostile):
    r = _upload(hostile, png_bytes(), name="looks-like.txt", ctype="text/plain")
    assert r.status_code == 200 and r.json()["format"] == "PNG"


def test_missing_file_field_is_422(hostile):
    r = hostile.post("/api/upload", data={"add": "false"})
    assert r.status_code == 422 and "file" in r.json()["error"]


def test_cross_origin_upload_refused(hostile):
    r = _upload(hostile, png_bytes(), headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    ok = _upload(hostile, png_bytes(), headers={"Origin": "http://testserver"})
    assert ok.status_code == 200


def test_foreign_host_header_refused(hostile):
    """DNS-rebinding guard: a loopback-bound server answers only to loopback host names."""
    assert hostile.get("/api/status", headers={"Host": "evil.example"}).status_code == 400
    assert hostile.get("/api/status", headers={"Host": "127.0.0.1:8000"}).status_code == 200


def test_internal_error_has_no_stack_trace(hostile, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret detail /home/user/private")

    monkeypatch.setattr(hostile.app.state.engine, "analyze", boom)
    r = _upload(hostile, png_bytes())
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error (details are in the server log)"}
    assert "secret" not in r.text and "Traceback" not in r.text
    page = hostile.get("/api/collection", params={"per_page": 2})
    assert page.status_code == 200  # the server keeps serving


def test_security_headers(hostile):
    r = hostile.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_unreadable_collection_image_is_422_not_500(coll_copy, engine):
    from artmem.web.app import create_app

    bad = os.path.join(coll_copy.root, coll_copy.paths[0])
    with open(bad, "wb") as fh:
        fh.write(b"garbage")
    with TestClient(create_app(coll_copy, engine=engine, background=False), raise_server_exceptions=False) as c:
        r = c.get("/api/artwork/0/thumb")  # a picture saying so, for <img> tags; the reason in a header
        assert r.status_code == 422 and "unreadable image" in r.text and "not an image" in r.headers["x-artmem-error"]
        assert c.get("/api/status").json()["indexing"]["unreadable"] == 1
        a = c.get("/artwork/0")  # the page opens and says what is wrong
        assert a.status_code == 200 and "unreadable image" in a.text and "not an image" in a.text


def test_serve_warns_on_non_loopback_host(monkeypatch, capsys, web_coll):
    import uvicorn

    from artmem.cli import main

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(kw))
    assert main(["serve", web_coll.root, "--model", "tiny_test", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert calls["host"] == "0.0.0.0" and calls["port"] == 8123
    assert "warning" in capsys.readouterr().err
    assert main(["serve", web_coll.root, "--model", "tiny_test"]) == 0
    assert calls["host"] == "127.0.0.1"
    assert "warning" not in capsys.readouterr().err


def test_serve_user_errors_exit_2(web_coll, tmp_path):
    from artmem.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert main(["serve", web_coll.root, "--model", "no_such_model"]) == 2
    assert main(["serve", web_coll.root, "--results", str(tmp_path / "missing")]) == 2


def test_remote_root_collection_served_through_fsspec(web_coll, engine):
    """A collection whose root is an fsspec URL (memory:// here, s3:// in real use) is browsable;
    `/files/` never serves remote roots and a row path with `..` is refused."""
    import fsspec
    import pandas as pd

    from artmem.data.collection import Collection
    from artmem.web.app import create_app

    fs = fsspec.filesystem("memory")
    rows = web_coll.table.head(3).copy()
    for rel in rows["path"]:
        fs.pipe(f"/webcoll/{rel}", open(web_coll.abs_path(rel), "rb").read())
    fs.pipe("/secret.jpg", open(web_coll.abs_path(rows["path"].iloc[0]), "rb").read())
    rows = pd.concat([rows, pd.DataFrame([{"path": "../secret.jpg", "style": "style_0"}])], ignore_index=True)
    coll = Collection(rows, "memory://webcoll", "remote")
    with TestClient(create_app(coll, engine=engine, background=False), raise_server_exceptions=False) as c:
        r = c.get("/api/artwork/1/thumb")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert c.get("/api/collection").json()["scored"] == 3  # the `..` row could not be read
        assert c.get("/api/artwork/3/thumb").status_code == 404
        assert c.get("/files/" + rows["path"].iloc[0]).status_code == 404


def test_mathtext_category_value_is_drawn_literally(coll_copy, engine):
    """`$\\frac{a$` as a category value: /categories, its box plot and the API answer 200."""
    import matplotlib

    from artmem.web.app import create_app

    matplotlib.rcParams["text.parse_math"] = True  # matplotlib's default, as in a fresh server
    coll_copy.table.loc[coll_copy.table["style"] == "style_0", "style"] = r"$\frac{a$"
    with TestClient(create_app(coll_copy, engine=engine, background=False), raise_server_exceptions=False) as c:
        assert c.get("/categories", params={"column": "style"}).status_code == 200
        svg = c.get("/api/categories/boxplot.svg", params={"column": "style"})
        assert svg.status_code == 200 and "frac" in svg.text
        assert c.get("/api/categories", params={"column": "style"}).status_code == 200
