// The memory game page (Khosla et al. 2015, Fig. 2a): each image IMAGE_MS, then a fixation cross
// FIXATION_MS; a press (space bar, tap or click) anytime in the window marks "seen before".
// Timing: every change of the display happens in a requestAnimationFrame callback, switched on
// the frame nearest to the due time, and the callback's timestamp is recorded as the onset/offset.
// All images of a level are fetched and decoded (ImageBitmap) before it starts, so the network
// never delays a frame. Each trial is posted when its window closes; a post that fails pauses the
// game after the current trial until the server answers again (nothing is dropped).
"use strict";

(() => {
  const body = document.body;
  const STUDY = body.dataset.study;
  const CODE = body.dataset.code || null;
  const $ = (id) => document.getElementById(id);
  const stage = $("stage");
  const ctx = stage.getContext("2d");

  let state = null;
  let bitmaps = new Map();  // position -> ImageBitmap of the current level
  let frameMs = 1000 / 60;
  let readyToStart = false;
  let current = null;       // the trial on screen: {position, onset, offset, pressed, rt, input}
  let lost = false;         // a post failed: finish the trial on screen, then wait for the server
  const queue = [];         // trial records not yet acknowledged, in order
  let sending = false;

  function show(screen) {
    for (const el of document.querySelectorAll("[data-screen]")) el.hidden = el.dataset.screen !== screen;
    body.dataset.phase = screen;
  }

  async function api(method, path, payload) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (payload !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(payload);
    }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { status: r.status, data };
  }

  function fail(message) {
    $("error-text").textContent = message;
    show("error");
  }

  function errorText(r) {
    if (!r.data) return `server answered ${r.status}`;
    return r.data.error || (typeof r.data.detail === "string" ? r.data.detail : `server answered ${r.status}`);
  }

  // ---------------------------------------------------------------- screens

  async function boot() {
    let r = null;
    try { r = await api("GET", "api/state"); } catch (e) { r = null; }
    if (r && r.status === 200) { state = r.data; enter(); return; }
    show("consent");
  }

  $("consent-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!$("consent-check").checked) return;
    $("consent-button").disabled = true;
    let r;
    try { r = await api("POST", "api/start", { study: STUDY, consent: true, participant: CODE }); }
    catch (err) { $("consent-button").disabled = false; return fail("The server cannot be reached."); }
    if (r.status !== 200) return fail(errorText(r));
    state = r.data;
    enter();
  });

  function practiceText(res) {
    return `Practice: you found ${res.found} of ${res.repeats} repeated images` +
      (res.false_alarms ? ` and pressed ${res.false_alarms} time(s) for a new image.` : ".");
  }

  function enter() {
    body.dataset.level = String(state.level);
    if (state.status === "finished") {
      $("completion-code").textContent = state.completion_code;
      return show("done");
    }
    if (state.status === "disqualified") {
      $("disqualified-result").textContent = state.practice_result ? practiceText(state.practice_result) : "";
      return show("disqualified");
    }
    $("level-title").textContent = state.level_kind === "practice"
      ? "Practice (with feedback)" : `Level ${state.level_number} of ${state.levels_total}`;
    const pr = state.practice_result;
    $("practice-result").hidden = !(pr && state.level_number === 1 && state.next_position === 0);
    if (pr) $("practice-result").textContent = practiceText(pr);
    $("resume-note").hidden = state.next_position === 0;
    readyToStart = false;
    $("start-button").disabled = true;
    $("ready-status").textContent = "Loading images…";
    show("ready");
    Promise.all([preload(state.trials.slice(state.next_position)), measureFrame()]).then(() => {
      readyToStart = true;
      $("start-button").disabled = false;
      $("ready-status").textContent = "Ready: press the space bar or the button to start.";
      body.dataset.ready = "1";
    }, () => fail("Some images could not be loaded. Reload the page to try again."));
  }

  async function preload(trials) {
    body.dataset.ready = "0";
    bitmaps = new Map();
    const bySrc = new Map();
    for (const t of trials) {
      if (!bySrc.has(t.src)) {
        bySrc.set(t.src, fetch(t.src, { credentials: "same-origin" }).then((r) => {
          if (!r.ok) throw new Error(`${t.src}: ${r.status}`);
          return r.blob();
        }).then((b) => createImageBitmap(b)));
      }
    }
    for (const t of trials) bitmaps.set(t.position, await bySrc.get(t.src));
  }

  function measureFrame() {
    // the display's frame interval (median of 20 rAF deltas): switch on the frame nearest the due time
    return new Promise((resolve) => {
      const stamps = [];
      const tick = (ts) => {
        stamps.push(ts);
        if (stamps.length < 21) return requestAnimationFrame(tick);
        const d = stamps.slice(1).map((t, i) => t - stamps[i]).sort((a, b) => a - b);
        frameMs = Math.min(Math.max(d[Math.floor(d.length / 2)], 4), 50);
        resolve();
      };
      requestAnimationFrame(tick);
    });
  }

  // ---------------------------------------------------------------- drawing

  function drawImage(bmp) {
    ctx.fillStyle = "#808080";
    ctx.fillRect(0, 0, stage.width, stage.height);
    const s = Math.min(stage.width / bmp.width, stage.height / bmp.height);
    const w = bmp.width * s, h = bmp.height * s;
    ctx.drawImage(bmp, (stage.width - w) / 2, (stage.height - h) / 2, w, h);
  }

  function drawFixation() {
    ctx.fillStyle = "#808080";
    ctx.fillRect(0, 0, stage.width, stage.height);
    ctx.fillStyle = "#000";
    const c = stage.width / 2;
    ctx.fillRect(c - 12, c - 2, 24, 4);
    ctx.fillRect(c - 2, c - 12, 4, 24);
  }

  function feedback(ok) {
    stage.classList.remove("correct", "wrong");
    stage.classList.add(ok ? "correct" : "wrong");
  }

  // ---------------------------------------------------------------- the level

  function startLevel() {
    if (!readyToStart || body.dataset.phase !== "ready") return;
    readyToStart = false;
    const level = state.level;
    const practice = state.level_kind === "practice";
    const trials = state.trials.slice(state.next_position);
    const imageMs = state.image_ms, windowMs = state.image_ms + state.fixation_ms;
    let resumed = state.next_position > 0;
    let k = 0;
    delete body.dataset.position;  // until the first image of this level is drawn
    body.dataset.shown = "none";
    show("playing");
    const begin = (ts) => {
      const t = trials[k];
      current = { position: t.position, repeat: !!t.repeat, onset: ts, offset: null,
                  pressed: false, rt: null, input: "none" };
      drawImage(bitmaps.get(t.position));
      stage.classList.remove("correct", "wrong");
      body.dataset.position = String(t.position);
      body.dataset.shown = "image";
      $("progress").textContent = `${t.position + 1} / ${state.trials.length}`;
    };
    const frame = (ts) => {
      if (current === null) begin(ts);
      else if (current.offset === null) {
        if (ts - current.onset >= imageMs - frameMs / 2) {
          drawFixation();
          current.offset = ts;
          body.dataset.shown = "fixation";
        }
      } else if (ts - current.onset >= windowMs - frameMs / 2) {
        const c = current;
        if (practice && c.repeat && !c.pressed) feedback(false);
        queue.push({ study: STUDY, level, position: c.position, pressed: c.pressed,
                     rt_ms: c.pressed ? c.rt : null, onset_ms: c.onset, offset_ms: c.offset,
                     end_ms: ts, input: c.input, resumed });
        resumed = false;
        current = null;
        pump();
        k += 1;
        if (k === trials.length || lost) return levelEnd();
        begin(ts);  // the next image appears on this same frame: the fixation lasts exactly to here
      }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  function respond(ts, input) {
    const c = current;
    if (c === null || c.pressed || body.dataset.phase !== "playing") return;
    c.pressed = true;
    c.rt = Math.max(0, ts - c.onset);
    c.input = input;
    if (state.level_kind === "practice") feedback(c.repeat);
  }

  document.addEventListener("keydown", (e) => {
    if (e.code !== "Space" && e.key !== " ") return;
    e.preventDefault();
    if (e.repeat) return;
    if (body.dataset.phase === "ready") startLevel();
    else respond(e.timeStamp, "key");
  });
  stage.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    respond(e.timeStamp, e.pointerType === "mouse" ? "mouse" : "touch");
  });
  $("start-button").addEventListener("click", startLevel);

  async function levelEnd() {
    body.dataset.shown = "";
    if (lost) show("paused");
    await drained();
    const r = await api("GET", "api/state").catch(() => null);
    if (!r || r.status !== 200) return fail(r ? errorText(r) : "The server cannot be reached.");
    state = r.data;
    enter();
  }

  // ---------------------------------------------------------------- storing

  let drainWaiters = [];
  function drained() {
    if (queue.length === 0 && !sending) return Promise.resolve();
    return new Promise((resolve) => drainWaiters.push(resolve));
  }

  async function pump() {
    if (sending) return;
    sending = true;
    while (queue.length) {
      let r = null;
      try { r = await api("POST", "api/trial", queue[0]); } catch (e) { r = null; }
      if (r && (r.status === 201 || (r.status === 409 && r.data && r.data.reason === "replay"))) {
        queue.shift();  // stored (now or by an earlier try whose answer was lost)
        continue;
      }
      if (r === null || r.status >= 500) {
        lost = true;  // the level stops after the trial on screen; retry until the server is back
        if (current === null) show("paused");
        await new Promise((res) => setTimeout(res, 1000));
        continue;
      }
      sending = false;
      queue.length = 0;
      return fail(errorText(r));
    }
    sending = false;
    if (lost) { lost = false; }
    const w = drainWaiters;
    drainWaiters = [];
    w.forEach((f) => f());
  }

  boot();
})();
