// artmem explorer: small progressive enhancements (no framework, no external assets).
"use strict";

function $(id) { return document.getElementById(id); }

function fmt(x, d) { return (x === null || x === undefined) ? "—" : Number(x).toFixed(d === undefined ? 3 : d); }

// "82nd percentile"; the top image reads "highest in the collection" (never "100.0th"),
// as labels.percentile_text words it on the server
function percentileText(p, rank) {
  if (rank === 1) return "highest in the collection";
  const n = Math.min(99, Math.max(0, Math.floor(p)));
  const suffix = (n % 100 >= 10 && n % 100 <= 20) ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  return n + suffix + " percentile";
}

function el(tag, attrs, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children || []) e.appendChild(c);
  return e;
}

function wireOverlay() {
  const toggle = $("toggle-map"), overlay = $("overlay"), opacity = $("map-opacity");
  if (!toggle || !overlay || toggle.dataset.wired) return;
  toggle.dataset.wired = "1";
  const apply = () => {
    if (toggle.checked && !overlay.getAttribute("src") && overlay.dataset.src) {
      const note = $("map-note");
      if (note) {
        note.textContent = "(computing…)";
        overlay.addEventListener("load", () => { note.textContent = ""; }, { once: true });
      }
      overlay.src = overlay.dataset.src;  // maps computed live are fetched only when asked for
    }
    overlay.hidden = !toggle.checked;
    if (opacity) overlay.style.opacity = opacity.value / 100;
  };
  overlay.addEventListener("error", () => {
    const note = $("map-note");
    if (note) note.textContent = "(map unavailable for this image)";
    toggle.checked = false; toggle.disabled = true; overlay.hidden = true;
  });
  toggle.addEventListener("change", apply);
  if (opacity) opacity.addEventListener("input", apply);
  apply();
}

function wireBrokenThumbs() {
  document.querySelectorAll(".thumb img").forEach((img) => {
    img.addEventListener("error", () => img.parentElement.classList.add("broken"));
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) img.parentElement.classList.add("broken");
  });
  const art = $("art");  // the artwork page's image: say so when the file cannot be read
  if (art) {
    const broken = () => {
      const stack = $("stack");
      stack.classList.add("unreadable");
      stack.replaceChildren(el("div", { class: "unreadable-msg", text: "unreadable image" }));
    };
    art.addEventListener("error", broken);
    if (art.complete && art.naturalWidth === 0) broken();
  }
}

function wireAutosubmit() {
  document.querySelectorAll("select[data-autosubmit]").forEach((s) => {
    s.addEventListener("change", () => s.form.submit());
  });
}

function wireIndexingPoll() {
  const pill = $("indexing");
  if (!pill) return;
  const tick = () => fetch("/api/status").then((r) => r.json()).then((s) => {
    const ix = s.indexing;
    if (ix.state === "running") {
      pill.textContent = "scoring " + ix.done + "/" + ix.total;
      setTimeout(tick, 2000);
    } else {
      pill.textContent = "scoring done — reload";
      pill.classList.remove("busy");
    }
  }).catch(() => {});
  setTimeout(tick, 2000);
}

function showUpload(res) {
  $("result").hidden = false;
  $("result-score").textContent = fmt(res.score);
  $("result-model").textContent = res.model ? "(" + res.model + ")" : "";
  $("result-bar").style.width = (res.percentile || 0) + "%";
  $("result-pct").textContent = res.percentile === null ? "no collection scores to compare with"
    : percentileText(res.percentile, res.rank) + " of the collection · rank " + res.rank + " of " + res.n_scored
      + (res.comparable ? "" : " (caution: the collection was scored with another model)");
  const overlay = $("overlay"), toggle = $("toggle-map"), note = $("map-note");
  overlay.hidden = true;
  toggle.checked = false;
  if (res.map_url) {
    $("map-tools").hidden = false;
    toggle.disabled = true;
    note.textContent = "(computing the map…)";
    overlay.onload = () => { toggle.disabled = false; note.textContent = ""; };
    overlay.onerror = () => { note.textContent = "(map unavailable)"; };
    overlay.src = res.map_url;  // fetched now, shown when ticked
  } else {
    $("map-tools").hidden = true;
  }
  const labels = $("result-labels");
  labels.replaceChildren();
  $("result-labels-card").hidden = !res.labels.length;
  for (const p of res.labels) {
    labels.appendChild(el("h3", { text: p.title || p.run, title: "classifier run " + p.run }));
    const t = el("table", { class: "probs" });
    for (const x of p.top) {
      t.appendChild(el("tr", {}, [
        el("td", { text: x.label }),
        el("td", { class: "num", text: fmt(100 * x.prob, 1) + "%" }),
        el("td", { class: "pbar" }, [el("i", { style: "width:" + (100 * x.prob) + "%" })]),
      ]));
    }
    labels.appendChild(t);
  }
  const file = $("result-file");
  file.replaceChildren();
  for (const [k, v] of [["name", res.filename], ["format", res.format], ["size", res.width + " × " + res.height + " px"],
                        ["analysis", fmt(res.timings.total_s, 2) + " s"]]) {
    file.appendChild(el("tr", {}, [el("th", { text: k }), el("td", { text: v })]));
  }
  const added = $("result-added");
  added.replaceChildren();
  if (res.added) {
    added.appendChild(document.createTextNode(res.added.created ? "Added to the uploads: " : "Already in the uploads: "));
    added.appendChild(el("a", { href: res.added.url, text: "open its page" }));
  }
  const sim = $("result-similar");
  sim.replaceChildren();
  $("result-similar-section").hidden = !res.similar.length;
  for (const s of res.similar) {
    sim.appendChild(el("li", { class: "tile" }, [el("a", { href: s.url, title: s.path }, [
      el("div", { class: "thumb" }, [el("img", { src: s.thumb, alt: s.path, loading: "lazy" })]),
      el("div", { class: "cap" }, [el("span", { class: "score", text: fmt(s.score) }),
                                   el("span", { class: "pct", text: "sim " + fmt(s.similarity, 2) })]),
    ])]));
  }
  wireOverlay();
}

function wireUpload() {
  const form = $("upload-form");
  if (!form) return;
  const input = $("file"), drop = $("drop"), progress = $("progress"), bar = $("progress-bar"),
    text = $("progress-text"), error = $("upload-error"), submit = $("submit");
  const maxBytes = Number(form.dataset.maxBytes);
  const fail = (msg) => {
    progress.hidden = true; progress.classList.remove("indeterminate");
    error.textContent = msg; error.hidden = false; submit.disabled = false;
  };
  const send = () => {
    const f = input.files[0];
    error.hidden = true;
    if (!f) { fail("Choose an image first."); return; }
    if (f.size > maxBytes) { fail("This file is " + (f.size / 1e6).toFixed(1) + " MB; the limit is " + (maxBytes / 1e6) + " MB."); return; }
    $("preview").src = URL.createObjectURL(f);
    const fd = new FormData();
    fd.append("file", f);
    fd.append("add", $("add").checked ? "true" : "false");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/upload");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) { bar.style.width = (100 * e.loaded / e.total) + "%"; text.textContent = "uploading… " + Math.round(100 * e.loaded / e.total) + "%"; }
    };
    xhr.upload.onload = () => { progress.classList.add("indeterminate"); text.textContent = "analysing (score, map, labels, similar)…"; };
    xhr.onload = () => {
      let res = null;
      try { res = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && res) {
        progress.hidden = true; progress.classList.remove("indeterminate"); submit.disabled = false;
        showUpload(res);
      } else {
        fail((res && res.error) ? res.error : "The server answered " + xhr.status + ".");
      }
    };
    xhr.onerror = () => fail("Network error: is the server still running?");
    progress.hidden = false; bar.style.width = "0%"; text.textContent = "uploading…"; submit.disabled = true;
    xhr.send(fd);
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  input.addEventListener("change", () => { if (input.files.length) send(); });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; send(); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireOverlay(); wireBrokenThumbs(); wireAutosubmit(); wireIndexingPoll(); wireUpload();
});
