// The tap-restore web page: pick or drop a photo, POST /restore (JSON reply), compare, download.
// Plain browser JavaScript, no build step; URLs are relative so the page also works under a path prefix.
"use strict";

const KEY_STORAGE = "tap-restore.api-key";
const TASK_LABELS = { rain: "Rain streaks", raindrop: "Raindrops", haze: "Haze", snow: "Snow", clean: "Clean" };
const OUTPUT_FORMATS = { "image/jpeg": "jpeg", "image/webp": "webp" }; // anything else comes back as PNG
const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp" };
const ERROR_TITLES = {
  0: "Could not reach the service",
  400: "The request was malformed",
  401: "This service needs an API key",
  413: "This photo is too large",
  415: "This file is not an image we can read",
  422: "The photo could not be processed",
  500: "The server failed to restore this photo",
  503: "The service is busy",
  504: "Restoring took too long",
};
const CODE_TITLES = { bad_image: "This image looks damaged or empty", unknown_degradation: "That weather is not available" };

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("restore-form"), inputs: $("inputs"), drop: $("drop"), file: $("file"), thumb: $("thumb"),
  dropTitle: $("drop-title"), dropHint: $("drop-hint"), degradation: $("degradation"), ensemble: $("ensemble"), submit: $("submit"),
  strength: $("strength"), strengthValue: $("strength-value"),
  keyBox: $("key-box"), apiKey: $("api-key"), progress: $("progress"), uploadBar: $("upload-bar"),
  progressText: $("progress-text"), status: $("status"), error: $("error"), errorTitle: $("error-title"),
  errorDetail: $("error-detail"), result: $("result"), compare: $("compare"), before: $("before"),
  after: $("after"), divider: $("divider"), beforeMissing: $("before-missing"), weatherLabel: $("weather-label"),
  weather: $("weather"), confidenceFact: $("confidence-fact"), confidence: $("confidence"), mixtureFact: $("mixture-fact"), mixture: $("mixture"),
  reasonFact: $("reason-fact"), reason: $("reason"),
  timing: $("timing"), roundTrip: $("round-trip"), scores: $("scores"), scoreList: $("score-list"), download: $("download"),
  downloadText: $("download-text"), size: $("size"), modelVersion: $("model-version"),
};

const state = { file: null, photoUrl: null, resultUrl: null };

function label(task) {
  return TASK_LABELS[task] || task.charAt(0).toUpperCase() + task.slice(1);
}

function percent(p) {
  return `${Math.round(p * 100)}%`;
}

function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function fileSize(bytes) {
  if (bytes < 1e3) return `${bytes} B`;
  return bytes < 1e6 ? `${Math.round(bytes / 1e3)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

// ---- API key: optional, remembered in localStorage (which may be unavailable) ----------------

function loadKey() {
  try {
    ui.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    /* storage disabled: the key just is not remembered */
  }
  if (ui.apiKey.value) ui.keyBox.open = true;
}

function saveKey() {
  try {
    if (ui.apiKey.value) localStorage.setItem(KEY_STORAGE, ui.apiKey.value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled */
  }
}

// ---- messages --------------------------------------------------------------------------------

function showError(title, detail) {
  ui.errorTitle.textContent = title;
  ui.errorDetail.textContent = detail || "";
  ui.errorDetail.hidden = !detail;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
}

/** A readable message from an API error reply: {"error": {"code", "message"}}, or whatever came back. */
function showApiError(xhr) {
  let code = null;
  let message = "";
  try {
    ({ code, message } = JSON.parse(xhr.responseText).error);
  } catch {
    message = xhr.status ? `${xhr.status} ${xhr.statusText}`.trim() : "";
  }
  const status = xhr.status;
  const base = CODE_TITLES[code] || ERROR_TITLES[status] || "Something went wrong";
  let title = status ? `${base} (${status}).` : `${base}.`;
  if (status === 401) {
    title += " Enter the key under “API key” and try again.";
    ui.keyBox.open = true;
    ui.apiKey.focus();
  } else if (status === 415) {
    title += " Try a PNG, JPEG or WebP photo.";
  } else if (status === 503) {
    title += ` Try again in ${xhr.getResponseHeader("Retry-After") || "a few"} s.`;
  } else if (status === 0) {
    title += " Check your connection and try again.";
  }
  showError(title, message && `Details: ${message}`);
  ui.status.textContent = title;
}

// ---- choosing a photo ------------------------------------------------------------------------

function choose(file) {
  if (!file) return;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.file = file;
  state.photoUrl = URL.createObjectURL(file);
  ui.thumb.hidden = !file.type.startsWith("image/");
  if (ui.thumb.hidden) ui.thumb.removeAttribute("src");
  else ui.thumb.src = state.photoUrl;
  ui.dropTitle.textContent = file.name;
  ui.dropHint.textContent = `${fileSize(file.size)} · drop or click to choose another`;
  ui.drop.classList.add("chosen");
  ui.submit.disabled = false;
  ui.result.hidden = true; // the old comparison is of another photo
  clearError();
}

function wireDropping() {
  ui.file.addEventListener("change", () => choose(ui.file.files[0]));
  // A format this browser cannot show (TIFF): the file name is enough.
  ui.thumb.addEventListener("error", () => {
    ui.thumb.hidden = true;
  });
  // The whole page is a drop target, so a photo dropped a little off the box does not open in the tab.
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    e.preventDefault();
    depth += 1;
    ui.drop.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) ui.drop.classList.remove("dragging");
  });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    ui.drop.classList.remove("dragging");
    if (ui.inputs.disabled) return;
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) {
      choose(file);
      ui.submit.focus();
    }
  });
}

// ---- weathers --------------------------------------------------------------------------------

async function loadDegradations() {
  try {
    const reply = await fetch("v1/degradations", { headers: { Accept: "application/json" } });
    const info = await reply.json();
    if (!reply.ok) throw new Error(info.error ? info.error.message : reply.statusText);
    for (const task of info.tasks) {
      ui.degradation.add(new Option(label(task.name), task.name));
    }
    ui.modelVersion.textContent = `Model ${info.model_version}`;
  } catch (err) {
    showError("Could not load the list of weathers; auto-detect still works.", `Details: ${err.message}`);
  }
}

// ---- restoring -------------------------------------------------------------------------------

function setBusy(busy) {
  ui.inputs.disabled = busy;
  ui.progress.hidden = !busy;
  ui.form.setAttribute("aria-busy", String(busy));
}

function restore(event) {
  event.preventDefault();
  if (!state.file) return;
  clearError();
  const fmt = OUTPUT_FORMATS[state.file.type] || "png";
  const body = new FormData();
  body.append("image", state.file, state.file.name);
  body.append("degradation", ui.degradation.value);
  body.append("ensemble", ui.ensemble.checked ? "true" : "false");
  body.append("strength", String(ui.strength.value / 100));
  body.append("format", fmt);

  const xhr = new XMLHttpRequest();
  const started = performance.now();
  xhr.open("POST", "restore");
  xhr.setRequestHeader("Accept", "application/json");
  if (ui.apiKey.value) xhr.setRequestHeader("X-API-Key", ui.apiKey.value);
  ui.progress.classList.remove("processing");
  ui.uploadBar.value = 0;
  ui.progressText.textContent = "Uploading…";
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) ui.uploadBar.value = (100 * e.loaded) / e.total;
  });
  xhr.upload.addEventListener("load", () => {
    ui.uploadBar.value = 100;
    ui.progress.classList.add("processing");
    ui.progressText.textContent = "Restoring…";
  });
  xhr.addEventListener("loadend", () => {
    setBusy(false);
    if (xhr.status === 200) {
      try {
        show(JSON.parse(xhr.responseText), performance.now() - started);
        return;
      } catch (err) {
        showError("The service sent a reply this page cannot read.", `Details: ${err.message}`);
        return;
      }
    }
    showApiError(xhr);
  });
  setBusy(true);
  ui.status.textContent = "Uploading and restoring…";
  xhr.send(body);
}

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function describe(reply) {
  const detected = reply.confidence != null;
  ui.weatherLabel.textContent = detected ? "Detected weather" : "Removed (your choice)";
  if (reply.degradation === "clean") {
    ui.weather.textContent = "None: returned unchanged";
  } else {
    ui.weather.textContent = reply.degradation.split("+").map(label).join(" + ");
  }
  ui.confidenceFact.hidden = !detected;
  ui.confidence.textContent = detected ? percent(reply.confidence) : "";

  ui.mixtureFact.hidden = !reply.mixture;
  if (reply.mixture) {
    ui.mixture.textContent = Object.entries(reply.mixture)
      .map(([task, weight]) => `${label(task)} ${percent(weight)}`)
      .join(" · ");
  }

  ui.reasonFact.hidden = !reply.reason;
  ui.reason.textContent = reply.reason || "";

  ui.scores.hidden = !reply.probabilities;
  ui.result.classList.toggle("with-scores", Boolean(reply.probabilities));
  ui.scoreList.replaceChildren();
  const ranked = Object.entries(reply.probabilities || {}).sort((a, b) => b[1] - a[1]);
  for (const [task, p] of ranked) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    const bar = document.createElement("span");
    const fill = document.createElement("span");
    const value = document.createElement("span");
    name.textContent = label(task);
    bar.className = "bar";
    fill.style.width = percent(p);
    value.textContent = percent(p);
    bar.append(fill);
    item.append(name, bar, value);
    ui.scoreList.append(item);
  }

  ui.timing.textContent = duration(reply.timings_ms.total);
  ui.timing.title = Object.entries(reply.timings_ms)
    .map(([step, ms]) => `${step}: ${duration(ms)}`)
    .join("\n");
}

function show(reply, roundTripMs) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  const blob = new Blob([decodeBase64(reply.image_base64)], { type: reply.media_type });
  state.resultUrl = URL.createObjectURL(blob);
  const stem = state.file.name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_") || "photo";
  const ext = EXTENSIONS[reply.format] || reply.format;

  ui.compare.style.setProperty("--ratio", String(reply.width / reply.height));
  ui.after.src = state.resultUrl;
  ui.before.src = state.photoUrl;
  ui.compare.classList.remove("no-before");
  ui.beforeMissing.hidden = true;
  ui.download.href = state.resultUrl;
  ui.download.download = `${stem}-restored.${ext}`;
  ui.downloadText.textContent = `Download ${ext.toUpperCase()}`;
  ui.size.textContent = `${reply.width} × ${reply.height} px · ${fileSize(blob.size)}`;
  describe(reply);
  ui.roundTrip.textContent = `${duration(roundTripMs)} with the upload`;
  setDivider(50);
  ui.result.hidden = false;
  ui.status.textContent = `Restored. ${ui.weatherLabel.textContent}: ${ui.weather.textContent}.`;
  ui.result.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// ---- before/after slider: a range input for keyboards and screen readers, pointer drags on the photo ----

function setDivider(pos) {
  const clamped = Math.min(100, Math.max(0, pos));
  ui.compare.style.setProperty("--pos", `${clamped}%`);
  ui.divider.value = String(Math.round(clamped));
  ui.divider.setAttribute("aria-valuetext", `${Math.round(clamped)}% original, ${100 - Math.round(clamped)}% restored`);
}

function wireSlider() {
  ui.divider.addEventListener("input", () => setDivider(Number(ui.divider.value)));
  const fromPointer = (e) => {
    const box = ui.compare.getBoundingClientRect();
    setDivider((100 * (e.clientX - box.left)) / box.width);
  };
  ui.compare.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    ui.compare.setPointerCapture(e.pointerId);
    ui.compare.classList.add("dragging");
    fromPointer(e);
  });
  ui.compare.addEventListener("pointermove", (e) => {
    if (ui.compare.hasPointerCapture(e.pointerId)) fromPointer(e);
  });
  const release = () => ui.compare.classList.remove("dragging");
  ui.compare.addEventListener("pointerup", () => {
    release();
    ui.divider.focus({ preventScroll: true }); // after mousedown, which would move the focus to the page
  });
  ui.compare.addEventListener("pointercancel", release);
  ui.before.addEventListener("error", () => {
    if (!ui.before.getAttribute("src")) return;
    ui.compare.classList.add("no-before");
    ui.beforeMissing.hidden = false;
  });
}

loadKey();
ui.apiKey.addEventListener("input", saveKey);
ui.form.addEventListener("submit", restore);
ui.strength.addEventListener("input", () => {
  ui.strengthValue.textContent = `${ui.strength.value}%`;
});
wireDropping();
wireSlider();
loadDegradations();
