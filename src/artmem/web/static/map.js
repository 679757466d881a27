// artmem explorer: the embedding map (canvas, no framework, no external assets).
// Points come from /api/map (a cached UMAP or t-SNE layout of the stored features). Drag moves,
// the wheel or +/- zooms; box and lasso select, and the selection fills the grid below and
// exports as CSV. Zoomed in, points become thumbnails framed in their colour.
"use strict";

(function () {
  const canvas = document.getElementById("map");
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  // Okabe & Ito (2008): colour-blind safe categorical colours (the report's palette)
  const OKABE = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000"];
  const OTHER = "#b8b8b8";
  // viridis at 9 stops (matplotlib's), interpolated linearly
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  const MAX_SHOWN = 120;  // tiles listed under the map; the CSV has them all

  const st = {
    d: null, s: 1, tx: 0, ty: 0, xr: 1, yr: 1, mode: "pan", colorBy: "score",
    colors: [], legend: [], selected: null, drag: null, lasso: [], thumbs: new Map(), pending: false,
  };

  function $(id) { return document.getElementById(id); }

  function viridis(t) {
    t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map((k) => Math.round(a[k] + f * (b[k] - a[k]))).join(",") + ")";
  }

  function cssSize() { const r = canvas.getBoundingClientRect(); return [r.width, r.height]; }

  function resize() {
    const [w, h] = cssSize(), dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }

  function fit() {
    const [w, h] = cssSize(), m = 40;
    st.s = Math.min((w - 2 * m) / st.xr, (h - 2 * m) / st.yr);
    st.tx = (w - st.xr * st.s) / 2; st.ty = (h - st.yr * st.s) / 2;
    draw();
  }

  function sx(i) { return st.tx + st.d.x[i] * st.s; }
  function sy(i) { return st.ty + (st.yr - st.d.y[i]) * st.s; }  // y grows upwards on the map

  function computeColors() {
    const d = st.d, n = d.n;
    st.colors = new Array(n);
    st.legend = [];
    if (st.colorBy === "score") {
      const vals = d.score.filter((v) => v !== null);
      const lo = vals.reduce((a, b) => Math.min(a, b), Infinity), hi = vals.reduce((a, b) => Math.max(a, b), -Infinity);
      const span = hi > lo ? hi - lo : 1;
      for (let i = 0; i < n; i++) st.colors[i] = d.score[i] === null ? OTHER : viridis((d.score[i] - lo) / span);
      st.legend = { lo: lo, hi: hi };
    } else {
      const vals = d.labels[st.colorBy], counts = new Map();
      for (const v of vals) counts.set(v, (counts.get(v) || 0) + 1);
      const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1]);
      const many = ranked.length > OKABE.length;
      const shown = ranked.slice(0, many ? OKABE.length - 1 : OKABE.length);
      const colorOf = new Map(shown.map(([v], k) => [v, OKABE[k]]));
      for (let i = 0; i < n; i++) st.colors[i] = colorOf.get(vals[i]) || OTHER;
      st.legend = shown.map(([v, c]) => [v === null ? "(none)" : v, colorOf.get(v), c]);
      if (many) st.legend.push(["other (" + (ranked.length - shown.length) + " values)", OTHER,
        ranked.slice(shown.length).reduce((a, b) => a + b[1], 0)]);
    }
    renderLegend();
  }

  function renderLegend() {
    const box = $("map-legend");
    box.replaceChildren();
    if (st.colorBy === "score") {
      const lo = document.createElement("span"); lo.textContent = "memorability " + st.legend.lo.toFixed(3);
      const ramp = document.createElement("i"); ramp.className = "ramp viridis";
      const hi = document.createElement("span"); hi.textContent = st.legend.hi.toFixed(3);
      box.append(lo, ramp, hi);
      return;
    }
    for (const [label, color, count] of st.legend) {
      const item = document.createElement("span"); item.className = "swatch";
      const dot = document.createElement("i"); dot.style.background = color;
      item.append(dot, document.createTextNode(label + " (" + count + ")"));
      box.appendChild(item);
    }
  }

  function thumbFor(i) {
    const id = st.d.ids[i];
    let img = st.thumbs.get(id);
    if (!img) {
      img = new Image();
      img.onload = () => draw();
      img.src = "/api/artwork/" + id + "/thumb?size=128";
      st.thumbs.set(id, img);
    }
    return img.complete && img.naturalWidth > 0 ? img : null;
  }

  function draw() {
    if (st.pending) return;
    st.pending = true;
    requestAnimationFrame(() => { st.pending = false; paint(); });
  }

  function paint() {
    const [w, h] = cssSize();
    ctx.clearRect(0, 0, w, h);
    if (!st.d) return;
    const n = st.d.n, sel = st.selected;
    const visible = [];
    for (let i = 0; i < n; i++) {
      const x = sx(i), y = sy(i);
      if (x > -60 && x < w + 60 && y > -60 && y < h + 60) visible.push(i);
    }
    const side = Math.min(96, st.s * 0.06);  // thumbnail size grows with the zoom
    const thumbs = side >= 22 && visible.length <= 600;
    for (const i of visible) {
      const x = sx(i), y = sy(i), on = !sel || sel.has(i);
      ctx.globalAlpha = on ? 1 : 0.18;
      const img = thumbs ? thumbFor(i) : null;
      if (img) {
        const k = side / Math.max(img.naturalWidth, img.naturalHeight);
        const iw = img.naturalWidth * k, ih = img.naturalHeight * k;
        ctx.fillStyle = st.colors[i];
        ctx.fillRect(x - iw / 2 - 3, y - ih / 2 - 3, iw + 6, ih + 6);
        ctx.drawImage(img, x - iw / 2, y - ih / 2, iw, ih);
      } else {
        ctx.beginPath(); ctx.arc(x, y, sel && on ? 5 : 4, 0, 2 * Math.PI);
        ctx.fillStyle = st.colors[i]; ctx.fill();
        if (sel && on) { ctx.lineWidth = 1.5; ctx.strokeStyle = "#1f2d3d"; ctx.stroke(); }
      }
    }
    ctx.globalAlpha = 1;
    const g = st.drag;
    if (g && st.mode === "box") {
      ctx.setLineDash([5, 4]); ctx.strokeStyle = "#1f2d3d"; ctx.lineWidth = 1.5;
      ctx.strokeRect(g.x0, g.y0, g.x1 - g.x0, g.y1 - g.y0); ctx.setLineDash([]);
    } else if (g && st.mode === "lasso" && st.lasso.length > 1) {
      ctx.beginPath(); ctx.moveTo(st.lasso[0][0], st.lasso[0][1]);
      for (const [x, y] of st.lasso) ctx.lineTo(x, y);
      ctx.closePath(); ctx.fillStyle = "rgba(53,96,140,.12)"; ctx.fill();
      ctx.strokeStyle = "#1f2d3d"; ctx.lineWidth = 1.5; ctx.stroke();
    }
  }

  function local(e) { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }

  function nearest(x, y, radius) {
    let best = -1, bd = radius * radius;
    for (let i = 0; i < st.d.n; i++) {
      const dx = sx(i) - x, dy = sy(i) - y, dd = dx * dx + dy * dy;
      if (dd < bd) { bd = dd; best = i; }
    }
    return best;
  }

  function inPolygon(x, y, poly) {  // ray casting
    let inside = false;
    for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      const [xa, ya] = poly[a], [xb, yb] = poly[b];
      if ((ya > y) !== (yb > y) && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
    }
    return inside;
  }

  function select(indices) {
    st.selected = indices.length ? new Set(indices) : null;
    draw(); renderSelection();
  }

  function zoomAt(x, y, factor) {
    const s = Math.min(st.s * factor, 200000);
    st.tx = x - (x - st.tx) * (s / st.s); st.ty = y - (y - st.ty) * (s / st.s); st.s = s;
    draw();
  }

  function scoreText(v) { return v === null ? "—" : v.toFixed(3); }

  function renderSelection() {
    const grid = $("sel-grid"), sel = st.selected ? [...st.selected] : [];
    grid.replaceChildren();
    $("sel-count").textContent = sel.length ? sel.length + " selected" : "No selection";
    $("sel-hint").hidden = sel.length > 0;
    $("sel-csv").disabled = $("sel-clear").disabled = !sel.length;
    sel.sort((a, b) => (st.d.score[b] ?? -1) - (st.d.score[a] ?? -1));  // most memorable first
    for (const i of sel.slice(0, MAX_SHOWN)) {
      const li = document.createElement("li"); li.className = "tile"; li.dataset.key = st.d.keys[i];
      const a = document.createElement("a"); a.href = "/a/" + st.d.keys[i]; a.title = st.d.paths[i];
      const th = document.createElement("div"); th.className = "thumb";
      const img = document.createElement("img"); img.src = "/api/artwork/" + st.d.ids[i] + "/thumb?size=256";
      img.alt = st.d.paths[i]; img.loading = "lazy";
      img.addEventListener("error", () => th.classList.add("broken"));
      th.appendChild(img);
      const cap = document.createElement("div"); cap.className = "cap";
      const sc = document.createElement("span"); sc.className = "score"; sc.textContent = scoreText(st.d.score[i]);
      cap.appendChild(sc);
      if (st.colorBy !== "score") {
        const lab = document.createElement("div"); lab.className = "labels";
        const v = document.createElement("span"); v.textContent = st.d.labels[st.colorBy][i] ?? "(none)";
        lab.appendChild(v); cap.appendChild(lab);
      }
      a.append(th, cap); li.appendChild(a); grid.appendChild(li);
    }
    const more = $("sel-more");
    more.hidden = sel.length <= MAX_SHOWN;
    more.textContent = "… and " + (sel.length - MAX_SHOWN) + " more (all of them are in the CSV export).";
  }

  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function exportCsv() {
    if (!st.selected) return;
    const cols = Object.keys(st.d.labels);
    const lines = [["key", "path", "score", "map_x", "map_y", ...cols].map(csvCell).join(",")];
    for (const i of st.selected) {
      lines.push([st.d.keys[i], st.d.paths[i], st.d.score[i], st.d.x[i], st.d.y[i],
        ...cols.map((c) => st.d.labels[c][i])].map(csvCell).join(","));
    }
    const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    const a = document.createElement("a"); a.href = url; a.download = "selection.csv";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (!st.d) return;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = local(e);
    st.drag = { x0: x, y0: y, x1: x, y1: y, tx: st.tx, ty: st.ty, moved: false };
    st.lasso = [[x, y]];
    $("map-tip").hidden = true;
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!st.d) return;
    const [x, y] = local(e), g = st.drag;
    if (!g) {  // hover: name and score of the nearest image
      const i = nearest(x, y, 10), tip = $("map-tip");
      tip.hidden = i < 0;
      if (i >= 0) {
        tip.textContent = st.d.paths[i] + " · " + scoreText(st.d.score[i]);
        tip.style.left = Math.min(x + 12, canvas.clientWidth - 220) + "px"; tip.style.top = (y + 12) + "px";
      }
      return;
    }
    g.x1 = x; g.y1 = y;
    g.moved = g.moved || Math.abs(x - g.x0) + Math.abs(y - g.y0) > 4;
    if (st.mode === "pan") { st.tx = g.tx + x - g.x0; st.ty = g.ty + y - g.y0; }
    else if (st.mode === "lasso") st.lasso.push([x, y]);
    draw();
  });
  canvas.addEventListener("pointerup", (e) => {
    const g = st.drag;
    if (!g || !st.d) return;
    st.drag = null;
    const [x, y] = local(e);
    if (!g.moved) {  // a click: select the image under the pointer (or clear)
      const i = nearest(x, y, 12);
      select(i >= 0 ? [i] : []);
      return;
    }
    if (st.mode === "box") {
      const x0 = Math.min(g.x0, x), x1 = Math.max(g.x0, x), y0 = Math.min(g.y0, y), y1 = Math.max(g.y0, y);
      const hit = [];
      for (let i = 0; i < st.d.n; i++) if (sx(i) >= x0 && sx(i) <= x1 && sy(i) >= y0 && sy(i) <= y1) hit.push(i);
      select(hit);
    } else if (st.mode === "lasso" && st.lasso.length > 2) {
      const hit = [];
      for (let i = 0; i < st.d.n; i++) if (inPolygon(sx(i), sy(i), st.lasso)) hit.push(i);
      select(hit);
    }
    st.lasso = [];
    draw();
  });
  canvas.addEventListener("pointerleave", () => { $("map-tip").hidden = true; });
  canvas.addEventListener("wheel", (e) => {
    if (!st.d) return;
    e.preventDefault();
    const [x, y] = local(e);
    zoomAt(x, y, Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });

  document.querySelectorAll(".modes .mode").forEach((b) => b.addEventListener("click", () => {
    st.mode = b.dataset.mode;
    document.querySelectorAll(".modes .mode").forEach((o) => o.classList.toggle("on", o === b));
    canvas.dataset.mode = st.mode;
  }));
  const centre = () => { const [w, h] = cssSize(); return [w / 2, h / 2]; };
  $("zoom-in").addEventListener("click", () => zoomAt(...centre(), 1.5));
  $("zoom-out").addEventListener("click", () => zoomAt(...centre(), 1 / 1.5));
  $("zoom-reset").addEventListener("click", fit);
  $("color-by").addEventListener("change", (e) => { st.colorBy = e.target.value; computeColors(); draw(); renderSelection(); });
  $("sel-clear").addEventListener("click", () => select([]));
  $("sel-csv").addEventListener("click", exportCsv);
  window.addEventListener("resize", resize);

  // for the browser tests and the curious: where each image is drawn, what is selected
  window.artmemMap = {
    ready: false,
    screenPoints: () => st.d ? st.d.ids.map((_, i) => [sx(i), sy(i)]) : [],
    selectedKeys: () => st.selected ? [...st.selected].map((i) => st.d.keys[i]) : [],
    keys: () => st.d ? st.d.keys.slice() : [],
  };

  fetch("/api/map").then((r) => r.json()).then((d) => {
    const status = $("map-status");
    if (!d.available) { status.textContent = d.reason || "no embeddings"; return; }
    st.d = d;
    st.xr = d.x.reduce((a, b) => Math.max(a, b), 1e-9); st.yr = d.y.reduce((a, b) => Math.max(a, b), 1e-9);
    status.hidden = true;
    const lay = d.layout || {};
    $("map-about").textContent = (lay.method === "umap" ? "UMAP" : "t-SNE")
      + (lay.perplexity ? " (perplexity " + Number(lay.perplexity).toFixed(1) + ")" : "")
      + " of " + (lay.model || "the stored") + " " + (lay.layer || "") + " features of " + d.n
      + " images: nearby images have similar features. Drag to move, wheel or +/− to zoom, click an image to select it.";
    computeColors();
    resize(); fit();
    window.artmemMap.ready = true;
  }).catch((err) => { $("map-status").textContent = "the map could not be loaded (" + err + ")"; });
})();
