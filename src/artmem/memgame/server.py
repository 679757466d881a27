"""`artmem memgame serve`: the FastAPI app participants play the memory game in.

Routes (all URLs the page uses are relative, so the app works under any prefix a reverse proxy
strips): `/` the game page, `/static/...` its script and style (package files), `/stim/NAME` a
stimulus of this study (only names listed in stimuli.parquet, from STUDY/stimuli), `/api/start`,
`/api/state`, `/api/trial` (JSON; the participant is the holder of an HttpOnly cookie whose token
only the database's hash matches), `/admin/login`, `/admin`, `/admin/api/progress` (the admin
token printed at start). Nothing else of the disk is reachable.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.middleware.trustedhost import TrustedHostMiddleware

from artmem.memgame.db import Store, TrialRefused
from artmem.memgame.study import Study
from artmem.web.middleware import SecurityHeaders, UploadLimit, allowed_hosts, cross_origin

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_BODY_BYTES = 2048  # a trial is ~250 bytes of JSON
POST_PATHS = ("/api/start", "/api/trial", "/admin/login")
CODE_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
ADMIN_COOKIE = "memgame_admin"


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: str = Field(max_length=64)
    consent: Literal[True]
    participant: str | None = Field(default=None, pattern=CODE_PATTERN)


class TrialBody(BaseModel):
    """One trial as the page measured it (times in ms on the page's performance.now() clock)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    study: str = Field(max_length=64)
    level: int = Field(ge=0, le=10_000)
    position: int = Field(ge=0, le=1_000_000)
    pressed: bool
    rt_ms: float | None = Field(default=None, ge=0, le=60_000)
    onset_ms: float = Field(ge=0, le=1e10)
    offset_ms: float = Field(ge=0, le=1e10)
    end_ms: float = Field(ge=0, le=1e10)
    input: Literal["key", "touch", "mouse", "none"]
    resumed: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.pressed != (self.rt_ms is not None) or self.pressed != (self.input != "none"):
            raise ValueError("a press needs rt_ms and an input kind; no press has neither")
        if not self.onset_ms <= self.offset_ms <= self.end_ms:
            raise ValueError("times must satisfy onset_ms <= offset_ms <= end_ms")
        if self.rt_ms is not None and self.rt_ms > self.end_ms - self.onset_ms + 1:
            raise ValueError("rt_ms falls after the end of the trial")
        return self


class StimulusCache:
    """The bytes of served stimuli kept in memory up to `max_bytes` (every participant preloads
    a whole level at once; reading the same small files from disk for each is the server's main
    cost under load). Beyond the budget files are streamed from disk."""

    def __init__(self, folder: Path, max_bytes: int = 256 * 1024 * 1024):
        self.folder, self.max_bytes, self.size = folder, max_bytes, 0
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def response(self, name: str) -> Response:
        headers = {"Cache-Control": "private, max-age=86400, immutable"}
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        data = self._data.get(name)
        if data is None:
            path = self.folder / name
            if path.stat().st_size + self.size > self.max_bytes:
                return FileResponse(path, media_type=media, headers=headers)
            data = path.read_bytes()
            with self._lock:
                if name not in self._data:
                    self._data[name] = data
                    self.size += len(data)
        return Response(data, media_type=media, headers=headers)


def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming the bad fields without echoing their values (a NaN would not even serialise)."""
    detail = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
              for e in exc.errors()]
    return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)


def _refused(exc: TrialRefused) -> JSONResponse:
    return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=409)


def create_app(study: Study | str | Path, admin_token: str, host: str = "127.0.0.1",
               extra_hosts: tuple[str, ...] = (), store: Store | None = None) -> FastAPI:
    """Build the game app over a study folder.

    Args:
        study: the study (or its folder).
        admin_token: the secret that opens /admin (printed by `serve`).
        host: the interface the server binds (decides the Host headers accepted).
        extra_hosts: more accepted Host names (the public name behind a reverse proxy).
        store: an open Store (tests); default: STUDY/memgame.sqlite, opened here.
    """
    if not isinstance(study, Study):
        study = Study.open(study)
    if len(admin_token) < 16:
        raise ValueError("the admin token must be at least 16 characters")
    store = store or Store(study)
    cookie = f"memgame_{study.study_id[:12]}"
    templates = Jinja2Templates(directory=HERE / "templates")
    consent_file = study.root / "consent.txt"
    consent_text = consent_file.read_text() if consent_file.is_file() else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        logger.info("memory game over %s: %d sessions", study.root, study.n_sessions)
        yield
        store.close()

    app = FastAPI(title="artmem memory game", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.store, app.state.study = store, study
    hosts = allowed_hosts(host)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts if "*" in hosts else [*hosts, *extra_hosts])
    app.add_middleware(UploadLimit, max_bytes=MAX_BODY_BYTES, paths=POST_PATHS, envelope_bytes=0,
                       message=f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(TrialRefused, lambda request, exc: _refused(exc))
    app.add_exception_handler(RequestValidationError, _invalid)

    def participant_of(request: Request):
        p = store.participant_by_token(request.cookies.get(cookie))
        if p is None:
            raise HTTPException(401, "no participant: start the game first")
        return p

    def check_post(request: Request, study_field: str | None = None) -> None:
        if cross_origin(request, allow_null=False):
            raise HTTPException(403, "cross-origin requests are refused")
        if study_field is not None and study_field != study.study_id:
            raise HTTPException(404, "unknown study")

    def require_json(request: Request) -> None:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send JSON (Content-Type: application/json)")

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, participant: str | None = None):
        code = participant if participant and re.fullmatch(CODE_PATTERN, participant) else ""
        return templates.TemplateResponse(request, "index.html", {
            "study_id": study.study_id, "code": code, "consent_text": consent_text,
            "image_ms": study.config.image_ms, "fixation_ms": study.config.fixation_ms})

    stim_cache = StimulusCache(study.root / "stimuli")

    @app.get("/stim/{name}")
    def stimulus(name: str):
        if name not in study.served:
            raise HTTPException(404, "no such stimulus")
        return stim_cache.response(name)

    json_only = [Depends(require_json)]  # runs before the body is parsed: a form post gets 415

    @app.post("/api/start", dependencies=json_only)
    def start(request: Request, body: StartBody):
        check_post(request, body.study)
        existing = store.participant_by_token(request.cookies.get(cookie))
        if existing is not None:  # the same browser again: resume, unless it claims another code
            if body.participant is not None and body.participant != existing.code:
                raise HTTPException(409, "this browser already plays as another participant")
            return state_of(existing)
        try:
            token, p = store.create_participant(body.participant)
        except TrialRefused as exc:
            raise HTTPException(409, str(exc)) from None
        response = JSONResponse(state_of(p))
        response.set_cookie(cookie, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=90 * 86400)
        return response

    @app.get("/api/state")
    def get_state(request: Request):
        return state_of(participant_of(request))

    @app.post("/api/trial", status_code=201, dependencies=json_only)
    def post_trial(request: Request, body: TrialBody):
        check_post(request, body.study)
        p = participant_of(request)
        p = store.record_trial(p.id, body.level, body.position, body.pressed, body.rt_ms,
                               body.onset_ms, body.offset_ms, body.end_ms, body.input, body.resumed)
        return {"stored": True, "status": p.status, "level": p.level, "next_position": p.next_position}

    def state_of(p) -> dict:
        main_levels = [lv for lv in study.levels if lv > 0]
        out = {"study": study.study_id, "participant": p.code, "status": p.status, "level": p.level,
               "level_kind": "practice" if p.level == 0 else "main",
               "level_number": main_levels.index(p.level) + 1 if p.level > 0 else 0,
               "levels_total": len(main_levels), "next_position": p.next_position,
               "image_ms": study.config.image_ms, "fixation_ms": study.config.fixation_ms}
        if study.has_practice and (p.level > 0 or p.status == "disqualified"):
            out["practice_result"] = store.practice_feedback(p.id)
        if p.status == "finished":
            out["completion_code"] = p.completion_code
        if p.status in ("practice", "playing"):
            design = study.level(p.session, p.level)
            trials = [{"position": int(q), "src": f"stim/{study.files[int(s)]}"}
                      for q, s in zip(design["position"], design["stim"], strict=True)]
            if p.level == 0:  # practice gives feedback, so the page must know the repeats
                for t, r in zip(trials, design["repeat"], strict=True):
                    t["repeat"] = bool(r)
            out["trials"] = trials
        return out

    _add_admin_routes(app, study, store, admin_token, templates)
    return app


def _add_admin_routes(app: FastAPI, study: Study, store: Store, token: str, templates) -> None:
    def authorised(request: Request) -> bool:
        given = request.cookies.get(ADMIN_COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        return hmac.compare_digest(given.encode(), token.encode())

    @app.get("/admin/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return templates.TemplateResponse(request, "admin_login.html", {"error": None})

    @app.post("/admin/login")
    def login(request: Request, token_field: Annotated[str, Form(alias="token", max_length=256)]):
        # a form navigation under `Referrer-Policy: no-referrer` sends Origin "null": allowed here
        # (a forged login needs the token anyway); fetch() posts always carry the real origin
        if cross_origin(request, allow_null=True):
            raise HTTPException(403, "cross-origin requests are refused")
        if not hmac.compare_digest(token_field.encode(), token.encode()):
            return templates.TemplateResponse(request, "admin_login.html",
                                              {"error": "wrong token"}, status_code=403)
        response = RedirectResponse("../admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    @app.get("/admin/api/progress")
    def progress_api(request: Request):
        if not authorised(request):
            raise HTTPException(401, "admin token needed (Authorization: Bearer TOKEN)")
        return progress(study, store)

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request) -> Response:
        if not authorised(request):
            return RedirectResponse("admin/login", status_code=303)
        return templates.TemplateResponse(request, "admin.html", {"p": progress(study, store)})


def progress(study: Study, store: Store) -> dict:
    """What the admin sees: responses per image against the goal (from the participants the
    export keeps), every participant's state and vigilance, and who the export will exclude."""
    from artmem.memgame.export import trial_table, vigilance_table

    parts, trials = store.tables()
    t = trial_table(study, parts, trials)
    vig = vigilance_table(study, t, parts)
    targets = study.stimuli[study.stimuli["source"] == "collection"]
    included = set(vig.loc[~vig["excluded"], "participant_id"])  # what the export will keep
    reps = t[(t["kind"] == "target") & (t["repeat"] == 1) & t["participant_id"].isin(included)]
    counts = reps.groupby("image").size()
    per_image = targets[["path", "condition"]].rename(columns={"path": "image"})
    per_image["responses"] = per_image["image"].map(counts).fillna(0).astype(int)
    per_image = per_image.sort_values(["responses", "image"])
    goal = study.config.responses_per_image
    return {
        "study": str(study.root), "goal": goal, "sessions": study.n_sessions,
        "images": int(len(per_image)), "images_at_goal": int((per_image["responses"] >= goal).sum()),
        "responses": int(len(reps)), "trials": int(len(t)),
        "least_covered": per_image.head(50).to_dict("records"),
        "participants": vig.drop(columns=["participant_id"]).fillna({"vigilance_miss_rate": -1}).to_dict("records"),
        "excluded": int(vig["excluded"].sum()),
    }
