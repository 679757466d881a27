"""The game server under normal play and hostile input (FastAPI TestClient): malformed and
replayed posts, another participant's identity, an unknown study, oversized bodies, paths outside
the study, foreign origins and hosts, the admin token."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient
from memgame_helpers import TINY, trial_payload

from artmem.memgame.design import DesignConfig, design_study
from artmem.memgame.server import create_app
from artmem.memgame.study import Study

TOKEN = "admin-token-0123456789"
BASE = "http://127.0.0.1"


@pytest.fixture
def study(image_folder, tmp_path):
    design_study(image_folder, tmp_path / "study", DesignConfig(**TINY, seed=1))
    return Study.open(tmp_path / "study")


@pytest.fixture
def client(study):
    with TestClient(create_app(study, TOKEN), base_url=BASE) as c:
        yield c


def start(client, study, code=None):
    r = client.post("/api/start", json={"study": study.study_id, "consent": True, "participant": code})
    assert r.status_code == 200, r.text
    return r.json()


def stored(study) -> list[tuple]:
    with sqlite3.connect(study.db_path) as con:
        return con.execute("SELECT participant, level, position, pressed FROM trials "
                           "ORDER BY participant, level, position").fetchall()


def play_level(client, study, state, press=lambda t: bool(t.get("repeat"))):
    for t in state["trials"][state["next_position"]:]:
        r = client.post("/api/trial", json=trial_payload(study.study_id, state["level"], t["position"], press(t)))
        assert r.status_code == 201, r.text
    return client.get("/api/state").json()


def test_play_through_and_export(client, study, tmp_path):
    from artmem.cli import main

    s = start(client, study, "PROLIFIC_1")
    assert s["level_kind"] == "practice" and len(s["trials"]) == TINY["practice_trials"]
    assert sum(t["repeat"] for t in s["trials"]) == TINY["practice_repeats"]
    s = play_level(client, study, s)
    assert s["level_kind"] == "main" and s["practice_result"] == {"repeats": 1, "found": 1, "false_alarms": 0}
    assert "repeat" not in s["trials"][0]  # the main level does not tell which images are repeats
    design = study.level(0, 1).reset_index(drop=True)
    s = play_level(client, study, s, press=lambda t: bool(design.loc[t["position"], "repeat"]))
    assert s["status"] == "finished" and len(s["completion_code"]) == 8 and "trials" not in s
    # after the last trial nothing more is accepted
    r = client.post("/api/trial", json=trial_payload(study.study_id, 1, 0, False))
    assert r.status_code == 409
    out = tmp_path / "export"
    assert main(["memgame", "export", str(study.root), "-o", str(out), "--csv"]) == 0
    import pandas as pd

    resp = pd.read_parquet(out / "responses.parquet")
    assert len(resp) == TINY["targets_per_level"] and resp["hit"].eq(1).all()
    assert resp["false_alarm"].eq(0).all() and resp["participant"].eq("PROLIFIC_1").all()
    assert (resp["rt_ms"] == 450.0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["participants"]["finished"] == 1 and summary["vigilance"]["hit_rate"] == 1.0
    assert summary["timing"]["image"]["median_ms"] == 600.0
    assert main(["memgame", "scores", str(out / "responses.parquet"), "-o", str(tmp_path / "scores")]) == 0


@pytest.mark.parametrize("change", [
    {"pressed": "yes"},                                   # not a boolean
    {"position": "3"},                                    # strings are not coerced
    {"rt_ms": 450.0},                                     # an RT without a press
    {"offset_ms": 10.0},                                  # offset before onset
    {"onset_ms": -5.0},
    {"input": "voice"},
    {"participant": "someone_else"},                      # unknown fields are refused
    {"level": -1},
    {"rt_ms": None, "pressed": True, "input": "key"},     # a press without an RT
])
def test_malformed_trials_are_refused(client, study, change):
    start(client, study)
    r = client.post("/api/trial", json={**trial_payload(study.study_id, 0, 0, False), **change})
    assert r.status_code == 422
    assert stored(study) == []


def test_raw_garbage_and_nan(client, study):
    start(client, study)
    headers = {"Content-Type": "application/json"}
    for raw in (b"{", b"[]", b"null", b'{"study": 1}',
                json.dumps(trial_payload(study.study_id, 0, 0, False)).replace("1000.0", "NaN").encode()):
        assert client.post("/api/trial", content=raw, headers=headers).status_code == 422
    # a form post (what a foreign page can send without CORS) is not JSON
    r = client.post("/api/trial", content=json.dumps(trial_payload(study.study_id, 0, 0, False)),
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert stored(study) == []


def test_replayed_and_out_of_order_trials(client, study):
    start(client, study)
    body = trial_payload(study.study_id, 0, 0, True)
    assert client.post("/api/trial", json=body).status_code == 201
    r = client.post("/api/trial", json={**body, "pressed": False, "rt_ms": None, "input": "none"})
    assert r.status_code == 409 and r.json()["reason"] == "replay"
    assert client.post("/api/trial", json=trial_payload(study.study_id, 0, 2, False)).json()["reason"] == "order"
    assert client.post("/api/trial", json=trial_payload(study.study_id, 1, 1, False)).status_code == 409
    assert stored(study) == [(1, 0, 0, 1)]  # the first answer kept, nothing else


def test_participants_are_kept_apart(study):
    app = create_app(study, TOKEN)
    with TestClient(app, base_url=BASE) as a, TestClient(app, base_url=BASE) as b:
        sa = start(a, study, "W_A")
        # B cannot take A's platform code, cannot post or read without a cookie, nor with a forged one
        r = b.post("/api/start", json={"study": study.study_id, "consent": True, "participant": "W_A"})
        assert r.status_code == 409
        assert b.get("/api/state").status_code == 401
        assert b.post("/api/trial", json=trial_payload(study.study_id, 0, 0, False)).status_code == 401
        b.cookies.set(next(iter(a.cookies.keys())), "forged-token", domain="127.0.0.1")
        assert b.get("/api/state").status_code == 401
        b.cookies.clear()
        sb = start(b, study, "W_B")
        assert sb["participant"] == "W_B" and sa["participant"] == "W_A"
        assert b.get("/api/state?participant=W_A").json()["participant"] == "W_B"
        # a browser that plays as A cannot switch to another code
        r = a.post("/api/start", json={"study": study.study_id, "consent": True, "participant": "W_B"})
        assert r.status_code == 409
        # each one's trials land on their own row
        assert a.post("/api/trial", json=trial_payload(study.study_id, 0, 0, True)).status_code == 201
        assert b.post("/api/trial", json=trial_payload(study.study_id, 0, 0, False)).status_code == 201
        assert stored(study) == [(1, 0, 0, 1), (2, 0, 0, 0)]
        # the two participants get different sessions (different images)
        assert sa["trials"] != sb["trials"]


def test_unknown_study_and_consent(client, study):
    r = client.post("/api/start", json={"study": "0" * 32, "consent": True})
    assert r.status_code == 404
    assert client.post("/api/start", json={"study": study.study_id, "consent": False}).status_code == 422
    assert client.post("/api/start", json={"study": study.study_id, "consent": True,
                                           "participant": "<script>"}).status_code == 422
    start(client, study)
    assert client.post("/api/trial", json=trial_payload("f" * 32, 0, 0, False)).status_code == 404
    assert client.post("/api/trial", json=trial_payload("é\u2603", 0, 0, False)).status_code == 404
    assert stored(study) == []


def test_oversized_bodies(client, study):
    start(client, study)
    big = {**trial_payload(study.study_id, 0, 0, False), "study": study.study_id + " " * 10_000}
    assert client.post("/api/trial", json=big).status_code == 413

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"study": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/api/trial", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert stored(study) == []


def test_nothing_outside_the_study_is_served(client, study):
    name = sorted(study.served)[0]
    for _ in range(2):  # from disk, then from the in-memory cache
        r = client.get(f"/stim/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (study.root / "stimuli" / name).read_bytes()
    for path in ("/stim/..%2Fstudy.json", "/stim/../study.json", "/stim/%2e%2e%2fmemgame.sqlite",
                 "/study.json", "/memgame.sqlite", "/stimuli/" + name, "/static/../server.py",
                 "/static/..%2Fserver.py", "/stim/" + name.replace(".png", ".PNG"), "/docs",
                 "/openapi.json", "/stim/%2Fetc%2Fpasswd"):
        assert client.get(path).status_code == 404, path


def test_foreign_origin_and_host(client, study):
    r = client.post("/api/start", json={"study": study.study_id, "consent": True},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/start", json={"study": study.study_id, "consent": True}, headers={"Origin": "null"})
    assert r.status_code == 403
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    r = client.get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


def test_proxy_host_is_allowed_when_named(study):
    app = create_app(study, TOKEN, extra_hosts=("game.example.org",))
    with TestClient(app, base_url="https://game.example.org") as c:
        r = c.post("/api/start", json={"study": study.study_id, "consent": True},
                   headers={"Origin": "https://game.example.org"})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie


def test_admin_needs_the_token(client, study):
    start(client, study, "W_1")
    assert client.get("/admin/api/progress").status_code == 401
    bad = {"Authorization": "Bearer wrong-token-000000000"}
    assert client.get("/admin/api/progress", headers=bad).status_code == 401
    r = client.get("/admin", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "admin/login"
    assert client.post("/admin/login", data={"token": "nope"}).status_code == 403
    assert client.post("/admin/login", data={"token": "é\u2603"}).status_code == 403
    assert client.get("/admin/api/progress", headers={"Authorization": "Bearer \xe9t\xe9".encode("latin-1")}).status_code == 401
    r = client.get("/admin/api/progress", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    p = r.json()
    assert [q["participant"] for q in p["participants"]] == ["W_1"]
    assert p["images"] == len(study.stimuli[study.stimuli["source"] == "collection"])
    r = client.post("/admin/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    # the browser's own form post says Origin "null" (the pages send no referrer)
    r = client.post("/admin/login", data={"token": TOKEN}, follow_redirects=False, headers={"Origin": "null"})
    assert r.status_code == 303
    page = client.get("/admin")
    assert page.status_code == 200 and "W_1" in page.text and "fewest responses" in page.text


def test_failed_practice_and_two_levels(image_folder, tmp_path):
    """A participant who finds too few practice repeats stops there (and the export says why);
    one who passes plays every level in order."""
    import pandas as pd

    from artmem.memgame.export import export_study

    cfg = DesignConfig(**{**TINY, "levels_per_participant": 2, "practice_repeats": 2,
                          "practice_trials": 6}, seed=4)
    design_study(image_folder, tmp_path / "study", cfg)
    study = Study.open(tmp_path / "study")
    app = create_app(study, TOKEN)
    with TestClient(app, base_url=BASE) as a, TestClient(app, base_url=BASE) as b:
        first = start(a, study, "W_fail")
        s = play_level(a, study, first, press=lambda t: False)
        assert s["status"] == "disqualified" and "trials" not in s
        assert s["practice_result"] == {"repeats": 2, "found": 0, "false_alarms": 0}
        assert a.post("/api/trial", json=trial_payload(study.study_id, 1, 0, False)).status_code == 409
        second = start(b, study, "W_pass")
        assert second["trials"] == first["trials"]  # the failed session is given to the next one
        s = play_level(b, study, second)
        levels = []
        while s["status"] == "playing":
            levels.append((s["level"], s["level_number"], s["levels_total"]))
            s = play_level(b, study, s, press=lambda t: False)
        assert levels == [(1, 1, 2), (2, 2, 2)] and s["status"] == "finished"
    export_study(study.root, tmp_path / "export")
    excluded = pd.read_parquet(tmp_path / "export" / "excluded.parquet")
    assert excluded.set_index("participant")["reason"].to_dict() == {
        "W_fail": "failed the practice level",
        "W_pass": "missed more than 25% of the vigilance repeats"}  # pressed nothing


def test_random_bodies_never_reach_a_5xx(study):
    """Seeded fuzz: bodies mixing right and wrong types for every field, random paths; every
    answer is a 2xx/3xx/4xx and only well-formed trials are stored."""
    import random

    rng = random.Random(0)
    values = [None, True, False, 0, -1, 1, 2**63, 1e308, -0.0, "", "x" * 300, "é\u2603\x00", [], {},
              [1, 2], {"a": 1}, 600.0, 1400.0, "key", "none", study.study_id]
    good = trial_payload(study.study_id, 0, 0, False)
    with TestClient(create_app(study, TOKEN), base_url=BASE, raise_server_exceptions=False) as c:
        start(c, study)
        for _ in range(300):
            body = {k: (rng.choice(values) if rng.random() < 0.3 else v) for k, v in good.items()}
            if rng.random() < 0.1:
                body[rng.choice(["extra", "participant", "__proto__"])] = rng.choice(values)
            r = c.post(rng.choice(["/api/trial", "/api/start"]), json=body)
            assert r.status_code < 500, (body, r.text)
        for _ in range(100):
            path = "/" + "/".join(rng.choice(["api", "stim", "admin", "..", "%2e%2e", "static", "x",
                                              "%00", "trial", "state", "login"])
                                  for _ in range(rng.randint(1, 4)))
            assert c.get(path).status_code < 500, path
    with sqlite3.connect(study.db_path) as con:
        rows = con.execute("SELECT level, position, pressed, rt_ms, input FROM trials "
                           "ORDER BY position").fetchall()
    assert [r[1] for r in rows] == list(range(len(rows)))  # in order, none skipped
    for level, _, pressed, rt, inp in rows:  # anything stored is a consistent trial
        assert level == 0 and (pressed == 1) == (rt is not None) == (inp != "none")
