// The annotation UI: one page, plain ES2020, everything through the HTTP API (API.md).
// Sections: state, api, rle, status, frames, view, timeline, tools, edits, propagation,
// panels, shortcuts, start.

// ---- state ------------------------------------------------------------------------------------
const PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#46f0f0",
  "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#aaffc3"];
const ZOOM_MIN = 0.25, ZOOM_MAX = 32;

const S = {
  project: null, videos: [], video: null, pk: null,
  frame: 0,          // the frame the annotator asked for
  shown: null,       // {pk, frame, image, cells: Map(track_id -> cell)}: what is on screen
  lanes: null,
  selected: null, hidden: new Set(), locked: new Set(), colors: new Map(),
  tool: "positive", radius: 8, opacity: 0.6,
  zoom: 1, panX: 0, panY: 0,        // view transform, canvas CSS pixels
  clicks: new Map(),                // "pk:frame:track" -> {points, labels, box}
  prompted: new Map(),              // track -> Set of frames prompted in this session
  pending: 0, writes: 0, errors: 0, lastError: null, lastExport: null,
  job: null,                        // the running propagation
  jobMasks: new Map(),              // frame -> Map(track -> {state, rle}) streamed by the job
  history: [],
};

const $ = (id) => document.getElementById(id);
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
const numFrames = () => (S.video ? S.video.num_frames : 0);
const trackIds = () => (S.video ? S.video.tracks.map((t) => t.track_id) : []);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") Object.assign(node.style, v); // CSSOM: the server's CSP forbids style attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && k !== "list") node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// Read-only state for tests and scripts: wait on it instead of sleeping.
window.annotator = Object.freeze({
  get pk() { return S.pk; },
  get frame() { return S.frame; },
  get loadedFrame() { return S.shown && S.shown.pk === S.pk ? S.shown.frame : null; },
  get ready() { return !frameLoader.running && this.loadedFrame === S.frame; },
  get selectedTrack() { return S.selected; },
  get busy() { return S.pending > 0 || S.job !== null; },
  get writes() { return S.writes; },
  get errors() { return S.errors; },
  get lastError() { return S.lastError; },
  get lastExport() { return S.lastExport; },
  get tool() { return S.tool; },
  get zoom() { return S.zoom; },
  get jobDone() { return S.job ? S.job.done : null; },
  get tracks() { return trackIds(); },
  get queueTotal() { return Q.total; },
  get queueFlags() { return Q.flags.map((f) => f.flag_id); },
  get queueCurrent() { return Q.current ? Q.current.flag_id : null; },
  get queueReady() { return Q.loaded > 0 && Q.loading === 0; },
  get flagsHere() { return ((S.lanes && S.lanes.flags) || []).filter((f) => f.frame_start <= S.frame && S.frame <= f.frame_end).map((f) => f.flag_id); },
  colorOf(track) { return S.colors.get(String(track)) || null; },
});

// ---- api --------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

/** The message of a failed response: the server's JSON `detail` (FastAPI 422s send a list). */
async function apiError(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: fall back to the status text */ }
  let detail = body && body.detail;
  if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return new ApiError(res.status, `${res.status} ${detail || res.statusText || "request failed"}`, body);
}

async function api(method, path, body, signal) {
  const opts = { method, signal, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (!res.ok) throw await apiError(res);
  return res.status === 204 ? null : res.json();
}

const videoPath = (rest = "") => `/api/videos/${S.pk}${rest}`;

// ---- rle --------------------------------------------------------------------------------------
/** Run lengths of a COCO compressed counts string, read as pycocotools' rleFrString reads it:
 * 5-bit groups, least significant first, char = '0' + group, 0x20 = more groups follow, 0x10 in
 * the last group = negative; from the third value on, a delta to the value two before. */
function rleRuns(s) {
  const runs = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      if (p >= s.length) throw new Error("truncated RLE counts");
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

/** A COCO RLE as a row-major Uint8Array (1 = foreground); runs are column-major, zeros first. */
function decodeRle(rle) {
  const [h, w] = rle.size;
  const runs = typeof rle.counts === "string" ? rleRuns(rle.counts) : rle.counts;
  const out = new Uint8Array(h * w);
  let idx = 0;
  for (let r = 0; r < runs.length; r++) {
    const n = runs[r];
    if (n < 0 || idx + n > h * w) throw new Error(`RLE runs exceed ${h}x${w}`);
    if (r & 1) {
      let x = Math.floor(idx / h), y = idx - x * h;
      for (let i = 0; i < n; i++) {
        out[y * w + x] = 1;
        if (++y === h) { y = 0; x++; }
      }
    }
    idx += n;
  }
  if (idx !== h * w) throw new Error(`RLE covers ${idx} of ${h * w} pixels`);
  return out;
}

const decoded = new Map(); // track -> {counts, data}: a track's mask is decoded once per change

function maskOf(track, rle) {
  const hit = decoded.get(track);
  if (hit && hit.counts === rle.counts && hit.h === rle.size[0]) return hit.data;
  const data = decodeRle(rle);
  decoded.set(track, { counts: rle.counts, h: rle.size[0], data });
  return data;
}

// ---- status -----------------------------------------------------------------------------------
function setStatus(text, kind = "") {
  const line = $("status-line");
  line.textContent = text;
  line.className = kind;
}

function reportError(err, what = "") {
  if (err && err.name === "AbortError") return;
  const msg = `${what ? what + ": " : ""}${err && err.message ? err.message : err}`;
  S.errors++;
  S.lastError = msg;
  setStatus(msg, "error");
  console.warn(msg); // a warning, not an error: the status line is where the annotator reads it
}

function updateBusy() {
  const busy = window.annotator.busy;
  document.body.classList.toggle("busy", busy);
  $("cancel").disabled = !S.job;
}

/** Run one write: counts as busy, reports errors, reloads the frame on a stale-version 409. */
async function act(what, fn) {
  S.pending++;
  updateBusy();
  try {
    const result = await fn();
    S.writes++;
    return result;
  } catch (err) {
    reportError(err, what);
    if (err.status === 409 && S.video) await reloadFrame();
    return undefined;
  } finally {
    S.pending--;
    updateBusy();
  }
}

// ---- frames -----------------------------------------------------------------------------------
// One request in flight at a time; frames asked for meanwhile collapse into the latest one, so
// scrubbing fast never queues stale requests.
const frameLoader = { running: false, dirty: false };

function requestFrame() {
  frameLoader.dirty = true;
  if (!frameLoader.running) runFrameLoader();
}

async function runFrameLoader() {
  frameLoader.running = true;
  try {
    while (frameLoader.dirty && S.video) {
      frameLoader.dirty = false;
      const pk = S.pk, frame = S.frame;
      const reuse = S.shown && S.shown.pk === pk && S.shown.frame === frame ? S.shown.image : null;
      const [image, masks] = await Promise.all([
        reuse || loadImage(`/api/videos/${pk}/frames/${frame}`),
        api("GET", `/api/videos/${pk}/masks/${frame}`),
      ]);
      if (pk !== S.pk) continue; // the video changed meanwhile
      S.shown = { pk, frame, image, cells: new Map(masks.cells.map((c) => [c.track_id, c])) };
      overlayDirty = true;
      draw();
      renderFlagsHere();
    }
  } catch (err) {
    reportError(err, `frame ${S.frame}`);
  } finally {
    frameLoader.running = false;
  }
}

async function loadImage(url) {
  const res = await fetch(url);
  if (!res.ok) throw await apiError(res);
  return createImageBitmap(await res.blob());
}

async function reloadFrame() {
  requestFrame();
  await waitFrame();
}

/** Resolves once the frame loader is idle (the latest asked frame is on screen or failed). */
function waitFrame() {
  return new Promise((resolve) => {
    const poll = () => (frameLoader.running || frameLoader.dirty ? setTimeout(poll, 15) : resolve());
    poll();
  });
}

function goto(frame) {
  if (!S.video) return;
  frame = clamp(Math.round(frame), 0, numFrames() - 1);
  // the same frame again: already shown, or already asked for (a failed load is retried)
  if (frame === S.frame && (frameLoader.running || (S.shown && S.shown.frame === frame))) return;
  S.frame = frame;
  drag = null;
  showFrameIndex();
  drawTimeline();
  requestFrame();
  rememberPlace();
}

function showFrameIndex() {
  const input = $("frame-index");
  if (document.activeElement !== input) input.value = String(S.frame);
}

function rememberPlace() {
  history.replaceState(null, "", `#pk=${S.pk}&f=${S.frame}`);
}

/** Current cells of the shown frame, with what a running propagation streamed for it. */
function shownCells() {
  if (!S.shown) return new Map();
  const streamed = S.jobMasks.get(S.shown.frame);
  if (!streamed) return S.shown.cells;
  const cells = new Map(S.shown.cells);
  for (const [track, step] of streamed) {
    const cell = cells.get(track);
    if (cell && cell.provenance === "human") continue; // propagation never overwrites a human mask
    cells.set(track, { ...(cell || { track_id: track, version: 0 }), state: step.state, rle: step.rle });
  }
  return cells;
}

// ---- view -------------------------------------------------------------------------------------
// Zoom 1, pan 0 = the frame fills the canvas exactly; the canvas keeps the video's aspect ratio.
const canvas = $("frame-canvas");
const ctx = canvas.getContext("2d");
const overlay = document.createElement("canvas");
let overlayDirty = true;
let cssW = 0, cssH = 0;
let pointer = null; // last pointer position over the canvas, video pixels (brush ring)

function layoutCanvas() {
  const stage = $("stage");
  $("stage-empty").hidden = !!S.video;
  canvas.hidden = !S.video;
  if (!S.video) return;
  const availW = stage.clientWidth - 8, availH = stage.clientHeight - 8;
  const scale = Math.max(0.01, Math.min(availW / S.video.width, availH / S.video.height));
  cssW = Math.max(1, Math.floor(S.video.width * scale));
  cssH = Math.max(1, Math.floor(S.video.height * scale));
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  draw();
}

const baseScale = () => cssW / S.video.width;
const viewScale = () => baseScale() * S.zoom;

function toVideo(ev) {
  const r = canvas.getBoundingClientRect();
  const s = viewScale();
  return [(ev.clientX - r.left - S.panX) / s, (ev.clientY - r.top - S.panY) / s];
}

function zoomAt(factor, cx = cssW / 2, cy = cssH / 2) {
  const z = clamp(S.zoom * factor, ZOOM_MIN, ZOOM_MAX);
  S.panX = cx - (cx - S.panX) * (z / S.zoom);
  S.panY = cy - (cy - S.panY) * (z / S.zoom);
  S.zoom = z;
  $("zoom-value").textContent = `${Math.round(z * 100)}%`;
  draw();
}

function zoomFit() {
  S.zoom = 1; S.panX = 0; S.panY = 0;
  $("zoom-value").textContent = "100%";
  draw();
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** Paint every visible present mask into the video-sized overlay canvas (later tracks on top). */
function renderOverlay() {
  const { width: w, height: h } = S.video;
  if (overlay.width !== w || overlay.height !== h) { overlay.width = w; overlay.height = h; }
  const octx = overlay.getContext("2d");
  const img = octx.createImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  for (const [track, cell] of shownCells()) {
    if (S.hidden.has(track) || cell.state !== "present" || !cell.rle) continue;
    const [r, g, b] = hexToRgb(S.colors.get(track) || "#ffffff");
    const colour = (255 << 24) | (b << 16) | (g << 8) | r; // ImageData is RGBA bytes, little-endian
    let mask;
    try { mask = maskOf(track, cell.rle); } catch (err) { reportError(err, `mask of object ${track}`); continue; }
    if (mask.length !== px.length) { reportError(`mask of object ${track} is not ${h}x${w}`); continue; }
    for (let i = 0; i < px.length; i++) if (mask[i]) px[i] = colour;
  }
  octx.putImageData(img, 0, 0);
  overlayDirty = false;
}

let drawQueued = false;
function draw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => { drawQueued = false; drawNow(); });
}

function drawNow() {
  if (!S.video || !cssW) return;
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!S.shown || S.shown.pk !== S.pk) return;
  if (overlayDirty) renderOverlay();
  const s = viewScale();
  ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * S.panX, dpr * S.panY);
  ctx.imageSmoothingEnabled = s < 2; // crisp pixels when zoomed in
  ctx.drawImage(S.shown.image, 0, 0, S.video.width, S.video.height);
  ctx.globalAlpha = S.opacity;
  ctx.drawImage(overlay, 0, 0);
  ctx.globalAlpha = 1;
  drawPrompts(s);
  drawDrag(s);
  drawBrushRing(s);
}

function drawPrompts(s) {
  const c = S.clicks.get(clickKey(S.shown.frame, S.selected));
  if (!c) return;
  if (c.box) strokeBox(c.box, s, "#ffffff", []);
  c.points.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, 5 / s, 0, 2 * Math.PI);
    ctx.fillStyle = c.labels[i] ? "#3cdc5a" : "#ff4040";
    ctx.fill();
    ctx.lineWidth = 1.5 / s;
    ctx.strokeStyle = "#000";
    ctx.stroke();
  });
}

function strokeBox([x0, y0, x1, y1], s, colour, dash) {
  ctx.setLineDash(dash.map((d) => d / s));
  ctx.lineWidth = 2 / s;
  ctx.strokeStyle = colour;
  ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  ctx.setLineDash([]);
}

function drawDrag(s) {
  if (!drag) return;
  if (drag.kind === "box") strokeBox([...drag.from, ...drag.to], s, S.colors.get(S.selected) || "#fff", [6, 4]);
  if (drag.kind === "stroke") {
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = 2 * S.radius;
    ctx.strokeStyle = drag.erase ? "rgba(0,0,0,0.6)" : S.colors.get(S.selected) || "#fff";
    ctx.globalAlpha = drag.erase ? 1 : Math.max(0.4, S.opacity);
    ctx.beginPath();
    drag.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (drag.points.length === 1) ctx.lineTo(drag.points[0][0] + 0.01, drag.points[0][1]);
    ctx.stroke();
    ctx.globalAlpha = 1;
  }
}

function drawBrushRing(s) {
  if (!pointer || (S.tool !== "brush" && S.tool !== "eraser")) return;
  ctx.beginPath();
  ctx.arc(pointer[0], pointer[1], S.radius, 0, 2 * Math.PI);
  ctx.lineWidth = 1.5 / s;
  ctx.strokeStyle = S.tool === "eraser" ? "#ff8080" : "#ffffff";
  ctx.stroke();
}

// ---- timeline ---------------------------------------------------------------------------------
// One canvas: thumbnails, a ruler, flags and one lane per object, drawn from runs (never per frame).
const tl = $("timeline");
const tctx = tl.getContext("2d");
const TL = { label: 64, thumbH: 36, ruler: 14, flags: 8, lane: 14, gap: 2, v0: 0, v1: 1, width: 0 };
const thumbs = new Map(); // frame -> HTMLImageElement (this video's, at most a few hundred)
let thumbErrorShown = false;

function tlRows() {
  const lanesTop = TL.thumbH + TL.ruler + TL.flags + 4;
  return { thumbs: 0, ruler: TL.thumbH, flags: TL.thumbH + TL.ruler, lanes: lanesTop };
}

function layoutTimeline() {
  const n = trackIds().length;
  const h = tlRows().lanes + n * (TL.lane + TL.gap) + 2;
  const dpr = window.devicePixelRatio || 1;
  TL.width = tl.parentElement.clientWidth - 16;
  tl.style.height = `${h}px`;
  tl.width = Math.round(TL.width * dpr);
  tl.height = Math.round(h * dpr);
  drawTimeline();
}

const tlSpan = () => TL.width - TL.label;
const frameX = (f) => TL.label + ((f - TL.v0) / (TL.v1 - TL.v0)) * tlSpan();
const xFrame = (x) => Math.floor(TL.v0 + ((x - TL.label) / tlSpan()) * (TL.v1 - TL.v0));

let tlQueued = false;
function drawTimeline() {
  if (tlQueued) return;
  tlQueued = true;
  requestAnimationFrame(() => { tlQueued = false; drawTimelineNow(); });
}

function drawTimelineNow() {
  const dpr = window.devicePixelRatio || 1;
  tctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  tctx.clearRect(0, 0, tl.width, tl.height);
  if (!S.video || TL.width <= TL.label) return;
  drawThumbs();
  drawRuler();
  drawFlags();
  drawLanes();
  drawCursor();
}

/** As many thumbnails as fit the strip; each one shows the middle frame of its slot. */
function drawThumbs() {
  const aspect = S.video.width / S.video.height;
  const count = Math.max(1, Math.min(TL.v1 - TL.v0, Math.floor(tlSpan() / (TL.thumbH * aspect))));
  const slot = tlSpan() / count;
  for (let j = 0; j < count; j++) {
    const frame = Math.floor(TL.v0 + ((j + 0.5) * (TL.v1 - TL.v0)) / count);
    const img = thumb(frame);
    const x = TL.label + j * slot;
    tctx.fillStyle = "#2a2d33";
    tctx.fillRect(x, 0, slot - 1, TL.thumbH);
    if (img.complete && img.naturalWidth) drawCover(img, x, 0, slot - 1, TL.thumbH);
  }
}

function thumb(frame) {
  let img = thumbs.get(frame);
  if (!img) {
    if (thumbs.size > 400) thumbs.clear(); // the strip shows a few dozen; keep memory flat
    img = new Image();
    img.onload = drawTimeline;
    img.onerror = () => {
      if (!thumbErrorShown) reportError(`thumbnail of frame ${frame} did not load`);
      thumbErrorShown = true;
    };
    img.src = `/api/videos/${S.pk}/thumbs/${frame}`;
    thumbs.set(frame, img);
  }
  return img;
}

function drawCover(img, x, y, w, h) {
  const s = Math.max(w / img.naturalWidth, h / img.naturalHeight);
  const sw = w / s, sh = h / s;
  tctx.drawImage(img, (img.naturalWidth - sw) / 2, (img.naturalHeight - sh) / 2, sw, sh, x, y, w, h);
}

function drawRuler() {
  const y = tlRows().ruler;
  const span = TL.v1 - TL.v0;
  const step = niceStep(span / Math.max(1, tlSpan() / 70));
  tctx.fillStyle = "#9aa0a8";
  tctx.strokeStyle = "#555";
  tctx.font = "10px system-ui, sans-serif";
  tctx.textBaseline = "middle";
  tctx.beginPath();
  for (let f = Math.ceil(TL.v0 / step) * step; f < TL.v1; f += step) {
    const x = Math.round(frameX(f)) + 0.5;
    tctx.moveTo(x, y);
    tctx.lineTo(x, y + 4);
    tctx.fillText(String(f), x + 2, y + TL.ruler / 2 + 1);
  }
  tctx.stroke();
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(Math.max(1, raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function drawFlags() {
  const y = tlRows().flags;
  tctx.fillStyle = "#9aa0a8";
  tctx.font = "10px system-ui, sans-serif";
  tctx.fillText("flags", 4, y + TL.flags / 2);
  tctx.fillStyle = "#ff5050";
  for (const f of (S.lanes && S.lanes.flags) || []) {
    if (f.frame_end < TL.v0 || f.frame_start >= TL.v1) continue;
    const x0 = frameX(f.frame_start), x1 = frameX(f.frame_end + 1);
    tctx.fillRect(x0, y + 1, Math.max(2, x1 - x0), TL.flags - 2);
  }
}

function drawLanes() {
  const top = tlRows().lanes;
  trackIds().forEach((track, i) => {
    const y = top + i * (TL.lane + TL.gap);
    const colour = S.colors.get(track) || "#ffffff";
    tctx.fillStyle = track === S.selected ? "#34404f" : "#24272c";
    tctx.fillRect(0, y, TL.width, TL.lane);
    tctx.fillStyle = colour;
    tctx.fillRect(2, y + 2, 8, TL.lane - 4);
    tctx.fillStyle = S.hidden.has(track) ? "#666" : "#e4e6ea";
    tctx.font = "11px system-ui, sans-serif";
    tctx.textBaseline = "middle";
    tctx.fillText(`${track}${S.locked.has(track) ? " [L]" : ""}`, 14, y + TL.lane / 2 + 1);
    const runs = (S.lanes && S.lanes.tracks[track]) || [];
    for (const [start, end, code] of runs) drawRun(start, end, code, y, colour);
    tctx.fillStyle = "#ffffff";
    for (const [start, , code] of runs) if (code === "human") keyMark(start, y);
    for (const f of S.prompted.get(track) || []) keyMark(f, y);
  });
}

function drawRun(start, end, code, y, colour) {
  if (end <= TL.v0 || start >= TL.v1) return;
  const x0 = frameX(Math.max(start, TL.v0)), x1 = frameX(Math.min(end, TL.v1));
  const w = Math.max(1, x1 - x0);
  if (code === "absent") {
    tctx.fillStyle = "#5a4646";
    tctx.fillRect(x0, y + 4, w, TL.lane - 8);
    return;
  }
  tctx.globalAlpha = code === "human" ? 1 : 0.4;
  tctx.fillStyle = colour;
  tctx.fillRect(x0, y + 1, w, TL.lane - 2);
  tctx.globalAlpha = 1;
}

function keyMark(frame, y) {
  if (frame < TL.v0 || frame >= TL.v1) return;
  const x = frameX(frame);
  tctx.beginPath();
  tctx.moveTo(x - 3, y);
  tctx.lineTo(x + 3, y);
  tctx.lineTo(x, y + 5);
  tctx.closePath();
  tctx.fill();
}

function drawCursor() {
  if (S.frame < TL.v0 || S.frame >= TL.v1) return;
  const x0 = frameX(S.frame), w = Math.max(2, frameX(S.frame + 1) - x0);
  tctx.fillStyle = "rgba(255, 170, 0, 0.35)";
  tctx.fillRect(x0, 0, w, tl.height);
  tctx.fillStyle = "#ffaa00";
  tctx.fillRect(Math.round(x0 + w / 2) - 1, 0, 2, tl.height);
}

async function loadLanes() {
  if (!S.video) return;
  const pk = S.pk;
  try {
    const lanes = await api("GET", videoPath("/lanes"));
    if (pk !== S.pk) return;
    S.lanes = lanes;
    drawTimeline();
    renderFlagsHere();
  } catch (err) {
    reportError(err, "lanes");
  }
}

function timelineTrackAt(y) {
  const i = Math.floor((y - tlRows().lanes) / (TL.lane + TL.gap));
  return y >= tlRows().lanes && i >= 0 && i < trackIds().length ? trackIds()[i] : null;
}

function bindTimeline() {
  let scrubbing = false;
  const local = (ev) => { const r = tl.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
  tl.addEventListener("pointerdown", (ev) => {
    if (!S.video || ev.button !== 0) return;
    const [x, y] = local(ev);
    if (x < TL.label) {
      const track = timelineTrackAt(y);
      if (track) selectTrack(track);
      return;
    }
    scrubbing = true;
    tl.setPointerCapture(ev.pointerId);
    goto(xFrame(x));
  });
  tl.addEventListener("pointermove", (ev) => { if (scrubbing) goto(xFrame(local(ev)[0])); });
  const stop = () => { scrubbing = false; };
  tl.addEventListener("pointerup", stop);
  tl.addEventListener("pointercancel", stop);
  tl.addEventListener("wheel", (ev) => {
    if (!S.video) return;
    ev.preventDefault();
    const [x] = local(ev);
    if (ev.shiftKey) scrollTimeline(Math.sign(ev.deltaY || ev.deltaX) * 0.1 * (TL.v1 - TL.v0));
    else zoomTimeline(ev.deltaY < 0 ? 0.8 : 1.25, clamp(xFrame(x), 0, numFrames()));
  }, { passive: false });
}

/** Zoom the visible frame window around `at` (never below 20 frames, never beyond the video). */
function zoomTimeline(factor, at) {
  const n = numFrames();
  const span = clamp(Math.round((TL.v1 - TL.v0) * factor), Math.min(20, n), n);
  const frac = (at - TL.v0) / (TL.v1 - TL.v0);
  TL.v0 = clamp(Math.round(at - frac * span), 0, n - span);
  TL.v1 = TL.v0 + span;
  drawTimeline();
}

function scrollTimeline(delta) {
  const span = TL.v1 - TL.v0;
  TL.v0 = clamp(Math.round(TL.v0 + delta), 0, numFrames() - span);
  TL.v1 = TL.v0 + span;
  drawTimeline();
}

/** Keep the cursor inside the visible window when the frame moves off it. */
function followCursor() {
  const span = TL.v1 - TL.v0;
  if (S.frame < TL.v0 || S.frame >= TL.v1) {
    TL.v0 = clamp(S.frame - Math.floor(span / 2), 0, numFrames() - span);
    TL.v1 = TL.v0 + span;
  }
}

// ---- tools ------------------------------------------------------------------------------------
let drag = null;      // {kind: "pan"|"box"|"stroke"|"click", ...} while a pointer is down
let spaceHeld = false;

function setTool(tool) {
  S.tool = tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === tool);
  $("stage").dataset.tool = tool;
  draw();
}

function bindCanvas() {
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", () => { drag = null; draw(); });
  canvas.addEventListener("pointerleave", () => { pointer = null; draw(); });
  canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
  canvas.addEventListener("wheel", (ev) => {
    if (!S.video) return;
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomAt(ev.deltaY < 0 ? 1.2 : 1 / 1.2, ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
}

function onPointerDown(ev) {
  if (!S.video || (ev.button !== 0 && ev.button !== 1)) return;
  canvas.focus();
  canvas.setPointerCapture(ev.pointerId);
  const at = toVideo(ev);
  if (ev.button === 1 || spaceHeld || S.tool === "pan") {
    drag = { kind: "pan", x: ev.clientX, y: ev.clientY, panX: S.panX, panY: S.panY };
    $("stage").classList.add("panning");
  } else if (S.tool === "box") {
    drag = { kind: "box", from: at, to: at };
  } else if (S.tool === "brush" || S.tool === "eraser") {
    drag = { kind: "stroke", erase: S.tool === "eraser", points: [at] };
  } else {
    drag = { kind: "click", at, label: S.tool === "positive" ? 1 : 0 };
  }
  draw();
}

function onPointerMove(ev) {
  if (!S.video) return;
  pointer = toVideo(ev);
  if (drag && drag.kind === "pan") {
    S.panX = drag.panX + ev.clientX - drag.x;
    S.panY = drag.panY + ev.clientY - drag.y;
  } else if (drag && drag.kind === "box") {
    drag.to = pointer;
  } else if (drag && drag.kind === "stroke") {
    const last = drag.points[drag.points.length - 1];
    // keep the stroke light: a point every quarter radius is enough for disks of that radius
    if (Math.hypot(pointer[0] - last[0], pointer[1] - last[1]) >= Math.max(1, S.radius / 4)) drag.points.push(pointer);
  }
  draw();
}

function onPointerUp(ev) {
  const d = drag;
  drag = null;
  $("stage").classList.remove("panning");
  if (!d || !S.video) return;
  if (d.kind === "box") {
    const [x0, y0] = d.from, [x1, y1] = toVideo(ev);
    if (Math.abs(x1 - x0) >= 3 && Math.abs(y1 - y0) >= 3) {
      sendBox([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(clipX));
    }
  } else if (d.kind === "stroke") {
    sendStroke(d.points, d.erase);
  } else if (d.kind === "click") {
    sendClick(d.at, d.label);
  }
  draw();
}

/** Round to a tenth of a pixel (shorter bodies) and keep it on the frame. */
function clipX(v, i) {
  const limit = i % 2 === 0 ? S.video.width : S.video.height;
  return Math.round(clamp(v, 0, limit) * 10) / 10;
}
const clipPoint = ([x, y]) => [clipX(x, 0), clipX(y, 1)];

// ---- edits ------------------------------------------------------------------------------------
const clickKey = (frame, track) => `${S.pk}:${frame}:${track}`;

/** The (frame, track) an edit applies to, or null with the reason on the status line. */
function editTarget() {
  const why = !S.video ? "pick a video first"
    : S.selected == null ? "select or add an object first"
      : S.locked.has(S.selected) ? `object ${S.selected} is locked`
        : S.job ? "wait for the propagation to end (or cancel it)"
          : !window.annotator.ready ? "the frame is still loading" : null;
  if (why) { reportError(why); return null; }
  const cell = S.shown.cells.get(S.selected);
  return { frame: S.shown.frame, track: S.selected, base: cell ? cell.version : 0 };
}

function sendClick(at, label) {
  const t = editTarget();
  if (!t) return;
  const key = clickKey(t.frame, t.track);
  const c = S.clicks.get(key) || { points: [], labels: [], box: null };
  c.points.push(clipPoint(at));
  c.labels.push(label);
  S.clicks.set(key, c);
  sendPrompt(t, c);
}

function sendBox(box) {
  const t = editTarget();
  if (!t) return;
  const c = { points: [], labels: [], box }; // a new box starts the frame's prompt over
  S.clicks.set(clickKey(t.frame, t.track), c);
  sendPrompt(t, c);
}

function sendPrompt(t, c) {
  const body = { frame: t.frame, track_id: t.track, base: t.base };
  if (c.points.length) { body.points = c.points; body.labels = c.labels; }
  if (c.box) body.box = c.box;
  return act(`prompt on frame ${t.frame}`, async () => {
    setStatus(`object ${t.track}, frame ${t.frame}: computing the mask…`);
    const r = await api("POST", videoPath("/prompt"), body);
    markPrompted(t.track, t.frame);
    await afterCellWrite(r.cell, `object ${t.track}, frame ${t.frame}: mask updated`);
  });
}

function sendStroke(points, erase) {
  const t = editTarget();
  if (!t) return;
  const body = { frame: t.frame, track_id: t.track, base: t.base, radius: S.radius, erase, points: points.map(clipPoint) };
  return act(erase ? "eraser" : "brush", async () => {
    const r = await api("POST", videoPath("/brush"), body);
    markPrompted(t.track, t.frame);
    await afterCellWrite(r.cell, `object ${t.track}, frame ${t.frame}: ${erase ? "erased" : "painted"}`);
  });
}

function markPrompted(track, frame) {
  if (!S.prompted.has(track)) S.prompted.set(track, new Set());
  S.prompted.get(track).add(frame);
}

/** Show a cell the server returned at once, then refresh lanes and history. */
async function afterCellWrite(cell, message) {
  if (cell && S.shown && S.shown.pk === S.pk) {
    S.shown.cells.set(cell.track_id, cell);
    overlayDirty = true;
    draw();
  }
  setStatus(message, "ok");
  await Promise.all([loadLanes(), loadHistory()]);
}

/** After an operation that may touch many cells: reload the frame, lanes, history. */
async function refreshAll({ detail = false } = {}) {
  if (!S.video) { await loadHistory(); return; }
  if (detail) await loadVideoDetail();
  await Promise.all([reloadFrame(), loadLanes(), loadHistory()]);
}

function clearClicks() {
  if (!S.shown) return;
  S.clicks.delete(clickKey(S.shown.frame, S.selected));
  draw();
  setStatus("clicks cleared (the stored mask is unchanged)");
}

function markAbsent(start = S.frame, end = S.frame) {
  if (!editTarget()) return;
  const track = S.selected;
  return act("absent", async () => {
    const r = await api("POST", videoPath("/absent"), { track_id: track, start, end });
    for (let f = start; f <= end; f++) S.clicks.delete(clickKey(f, track));
    await refreshAll();
    setStatus(`object ${track} absent on ${r.count} frame(s) ${start}..${end}`, "ok");
  });
}

function addFlag(start = S.frame, end = S.frame, message = "revisit") {
  if (!S.video) return;
  const tracks = S.selected == null ? [] : [S.selected];
  return act("flag", async () => {
    await api("POST", videoPath("/flags"), { frame_start: start, frame_end: end, track_ids: tracks, message });
    await Promise.all([loadLanes(), loadQueue()]);
    setStatus(`flagged frames ${start}..${end}`, "ok");
  });
}

function dismissFlag(flagId) {
  return act("dismiss flag", async () => {
    await api("POST", `/api/flags/${encodeURIComponent(flagId)}/dismiss`);
    await Promise.all([loadLanes(), loadQueue()]);
    setStatus(`flag ${flagId} dismissed`, "ok");
  });
}

function undoRedo(which) {
  if (S.job) { reportError("wait for the propagation to end (or cancel it)"); return; }
  return act(which, async () => {
    const r = await api("POST", `/api/${which}`);
    for (const c of r.cells || []) {
      if (c.pk !== S.pk) continue;
      S.clicks.delete(clickKey(c.frame, c.track_id)); // those clicks made a mask that is gone now
      if (S.prompted.has(c.track_id)) S.prompted.get(c.track_id).delete(c.frame);
    }
    await refreshAll({ detail: true });
    const here = (r.cells || []).filter((c) => c.pk === S.pk).length;
    setStatus(`${which} of operation ${r.op_id}: ${(r.cells || []).length} cell(s)${here ? "" : " (another video)"}`, "ok");
  });
}

// ---- propagation ------------------------------------------------------------------------------
function propagate(direction) {
  if (!S.video) return reportError("pick a video first");
  if (S.job) return reportError("a propagation is already running");
  const tracks = $("propagate-all").checked ? trackIds().filter((t) => !S.locked.has(t))
    : S.selected != null && !S.locked.has(S.selected) ? [S.selected] : [];
  if (!tracks.length) return reportError(S.selected == null ? "select an object first" : `object ${S.selected} is locked`);
  const job = { id: null, done: 0, cancel: false, start: S.frame, direction, tracks, expected: expectedSteps(direction, tracks.length) };
  S.job = job;
  S.pending++; // busy until the lanes and the frame are read back, not only until the stream ends
  S.jobMasks.clear();
  showProgress();
  updateBusy();
  runPropagation(job).finally(() => {
    S.job = null;
    S.jobMasks.clear();
    overlayDirty = true;
    $("job-bar").hidden = true;
    S.pending--;
    updateBusy();
    draw();
  });
}

function expectedSteps(direction, tracks) {
  const n = numFrames(), f = S.frame;
  const frames = direction === "forward" ? n - 1 - f : direction === "backward" ? f : n - 1;
  return Math.max(1, frames * tracks); // an upper bound: tracks stop at their next keyframe
}

async function runPropagation(job) {
  const body = { track_ids: job.tracks, start: job.start, direction: job.direction };
  let done = null;
  try {
    setStatus(`propagating ${job.direction} from frame ${job.start}…`);
    const res = await fetch(videoPath("/propagate"), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!res.ok) throw await apiError(res);
    await readNdjson(res.body, (msg) => { if (msg.type === "done") done = msg; else onJobMessage(job, msg); });
    if (!done) throw new Error("the propagation stream ended without its result");
    if (done.error) reportError(done.error, "propagation");
    else {
      S.writes++;
      setStatus(`propagation ${done.cancelled ? "cancelled" : "done"}: ${done.written} mask(s) stored`, "ok");
    }
  } catch (err) {
    reportError(err, "propagation");
  }
  S.job = null; // before the refresh, so the shown frame is read from the store again
  S.jobMasks.clear();
  updateBusy();
  $("job-progress").textContent = `${job.done} frame(s) computed`;
  await refreshAll();
}

async function readNdjson(stream, onMessage) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  const flush = (final) => {
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onMessage(JSON.parse(line));
    }
    if (final && buf.trim()) onMessage(JSON.parse(buf));
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    flush(false);
  }
  buf += decoder.decode();
  flush(true);
}

function onJobMessage(job, msg) {
  if (msg.type === "start") {
    job.id = msg.job;
    if (job.cancel) cancelJob();
  } else if (msg.type === "step") {
    job.done++;
    if (!S.jobMasks.has(msg.frame)) S.jobMasks.set(msg.frame, new Map());
    S.jobMasks.get(msg.frame).set(msg.track_id, { state: msg.state, rle: msg.rle || null });
    if (S.shown && S.shown.frame === msg.frame) { overlayDirty = true; draw(); }
    showProgress(msg.frame);
  }
}

function showProgress(frame) {
  const job = S.job;
  if (!job) return;
  const bar = $("job-bar");
  bar.hidden = false;
  bar.max = job.expected;
  bar.value = Math.min(job.done, job.expected);
  $("job-progress").textContent = `${job.done} frame(s) done${frame == null ? "" : `, at ${frame}`}`;
}

function cancelJob() {
  const job = S.job;
  if (!job) return;
  job.cancel = true;
  if (!job.id) return; // sent once the stream names the job
  api("POST", `/api/jobs/${encodeURIComponent(job.id)}/cancel`)
    .then(() => setStatus("cancelling the propagation…"))
    .catch((err) => reportError(err, "cancel"));
}

// ---- panels: project, videos ------------------------------------------------------------------
async function loadProject() {
  S.project = await api("GET", "/api/project");
  $("project-name").textContent = S.project.name;
  $("project-user").textContent = `${S.project.user} · ${S.project.engine}`;
  document.title = `${S.project.name} · annotate`;
  fillSelect($("export-format"), S.project.export_formats);
  fillSelect($("video-status"), S.project.statuses);
  fillSelect($("video-filter"), S.project.statuses, ["", "all statuses"]);
  fillSelect($("expression-kind"), S.project.kinds, ["", "kind…"]);
  if (!$("export-name").value) $("export-name").value = "export";
}

function fillSelect(select, values, first = null) {
  select.replaceChildren();
  if (first) select.append(el("option", { value: first[0], textContent: first[1] }));
  for (const v of values) select.append(el("option", { value: v, textContent: v }));
}

async function loadVideos() {
  S.videos = await api("GET", "/api/videos");
  renderVideos();
}

function renderVideos() {
  const filter = $("video-filter").value;
  const items = S.videos.filter((v) => !filter || v.status === filter).map((v) => el("li", {
    className: v.pk === S.pk ? "selected" : "", dataset: { pk: v.pk, testid: "video-item" },
    title: `${v.split}/${v.video_id}: ${v.num_frames} frames ${v.width}x${v.height}`,
    onclick: () => openVideo(v.pk),
  }, el("div", {}, el("strong", { textContent: v.video_id }), " ", el("span", { className: "muted", textContent: v.split })),
  el("div", { className: "muted" },
    el("span", { className: `status-badge ${v.status}`, textContent: v.status }),
    ` ${v.num_frames} fr · ${v.num_tracks} obj · ${v.num_expressions} expr${v.assignee ? " · " + v.assignee : ""}`)));
  $("video-list").replaceChildren(...items);
}

async function openVideo(pk) {
  if (S.job) return reportError("cancel the propagation before switching videos");
  try {
    S.pk = pk;
    S.video = null; // nothing reads the old video's frames under the new pk
    S.shown = null;
    S.lanes = null;
    S.selected = null;
    S.hidden.clear(); S.locked.clear(); S.colors.clear(); S.prompted.clear(); S.clicks.clear();
    decoded.clear(); thumbs.clear(); thumbErrorShown = false;
    await loadVideoDetail();
    const want = Number(new URLSearchParams(location.hash.slice(1)).get("f"));
    S.frame = pk === hashPk() && want >= 0 && want < numFrames() ? want : 0;
    TL.v0 = 0; TL.v1 = numFrames();
    zoomFit();
    renderVideos();
    layoutCanvas();
    layoutTimeline();
    showFrameIndex();
    $("frame-count").textContent = `/ ${numFrames() - 1}`;
    $("frame-index").max = String(numFrames() - 1);
    rememberPlace();
    setStatus(`${S.video.split}/${S.video.video_id}: ${numFrames()} frames`);
    requestFrame();
    await Promise.all([loadLanes(), loadHistory()]);
  } catch (err) {
    reportError(err, `video ${pk}`);
  }
}

const hashPk = () => Number(new URLSearchParams(location.hash.slice(1)).get("pk"));

async function loadVideoDetail() {
  const pk = S.pk;
  const video = await api("GET", videoPath());
  if (pk !== S.pk) return;
  S.video = video;
  video.tracks.forEach((t, i) => { if (!S.colors.has(t.track_id)) S.colors.set(t.track_id, PALETTE[i % PALETTE.length]); });
  if (S.selected != null && !trackIds().includes(S.selected)) S.selected = null;
  $("video-meta").hidden = false;
  $("video-title").textContent = `${video.split}/${video.video_id}`;
  $("video-status").value = video.status;
  $("video-assignee").value = video.assignee || "";
  renderObjects();
  renderNewExpressionChecks();
  renderExpressions();
  layoutTimeline();
}

function setVideoField(field, value) {
  if (!S.video) return;
  const body = field === "status" ? { status: value } : { assignee: value || null };
  return act(field, async () => {
    await api("PUT", videoPath(`/${field}`), body);
    await Promise.all([loadVideos(), loadVideoDetail()]);
    setStatus(`${field} set to ${value || "nobody"}`, "ok");
  });
}

// ---- panels: objects --------------------------------------------------------------------------
function renderObjects() {
  const items = S.video.tracks.map((t, i) => {
    const id = t.track_id;
    const li = el("li", {
      className: `${id === S.selected ? "selected" : ""} ${S.hidden.has(id) ? "hidden-track" : ""}`,
      dataset: { track: id, testid: "object-item" }, onclick: () => selectTrack(id),
    },
    el("span", { className: "key", textContent: i < 9 ? String(i + 1) : "" }),
    el("input", {
      type: "color", value: S.colors.get(id), title: "colour", dataset: { testid: "object-color", track: id },
      onclick: (ev) => ev.stopPropagation(), oninput: (ev) => setColor(id, ev.target.value),
    }),
    el("span", { className: "name", textContent: `object ${id}${t.category ? ` · ${t.category}` : ""}` }),
    el("button", {
      textContent: S.hidden.has(id) ? "show" : "hide", title: "Hide or show (H)", dataset: { testid: "object-hide", track: id },
      onclick: (ev) => { ev.stopPropagation(); toggleHidden(id); },
    }),
    el("button", {
      textContent: S.locked.has(id) ? "unlock" : "lock", title: "A locked object takes no edits (L)",
      className: S.locked.has(id) ? "active" : "", dataset: { testid: "object-lock", track: id },
      onclick: (ev) => { ev.stopPropagation(); toggleLocked(id); },
    }));
    return li;
  });
  $("object-list").replaceChildren(...items);
}

/** The new expression's object checkboxes, keeping what was already ticked. */
function renderNewExpressionChecks() {
  const box = $("expression-new-tracks");
  renderTrackChecks(box, new Set(checkedTracks(box)), "expr-new-track");
}

function selectTrack(id) {
  if (id == null || !trackIds().includes(id)) return;
  S.selected = id;
  renderObjects();
  drawTimeline();
  draw();
}

function selectIndex(i) {
  const ids = trackIds();
  if (i < ids.length) selectTrack(ids[i]);
}

function setColor(id, colour) {
  S.colors.set(id, colour);
  for (const name of document.querySelectorAll(`.track-name[data-track="${CSS.escape(id)}"]`)) name.style.color = colour;
  overlayDirty = true;
  draw();
  drawTimeline();
}

function toggleHidden(id = S.selected) {
  if (id == null) return;
  if (S.hidden.has(id)) S.hidden.delete(id); else S.hidden.add(id);
  overlayDirty = true;
  renderObjects();
  draw();
  drawTimeline();
}

function toggleLocked(id = S.selected) {
  if (id == null) return;
  if (S.locked.has(id)) S.locked.delete(id); else S.locked.add(id);
  renderObjects();
  drawTimeline();
  setStatus(`object ${id} ${S.locked.has(id) ? "locked" : "unlocked"}`);
}

function addObject() {
  if (!S.video) return reportError("pick a video first");
  const category = $("object-category").value.trim();
  return act("add object", async () => {
    const r = await api("POST", videoPath("/tracks"), category ? { category } : {});
    $("object-category").value = "";
    await Promise.all([loadVideoDetail(), loadVideos()]);
    selectTrack(r.track_id);
    await loadLanes();
    setStatus(`object ${r.track_id} added: draw a box or click on it`, "ok");
  });
}

function renderFlagsHere() {
  const list = $("flag-list");
  const flags = ((S.lanes && S.lanes.flags) || []).filter((f) => f.frame_start <= S.frame && S.frame <= f.frame_end);
  list.replaceChildren(...flags.map((f) => el("li", { dataset: { testid: "flag-item" } },
    el("span", { textContent: `${f.frame_start}..${f.frame_end} ${f.severity || ""} ${f.check || ""}: ${f.message}` }), " ",
    el("button", { textContent: "dismiss", dataset: { testid: "flag-dismiss" }, onclick: () => dismissFlag(f.flag_id) }))));
  if (!flags.length) list.append(el("li", { className: "muted", textContent: "none on this frame" }));
}

// ---- panels: range operations -----------------------------------------------------------------
const RANGE_KINDS = {
  swap: { a: "Object", b: "with", message: false },
  merge: { a: "Merge", b: "into", message: false },
  split: { a: "Split", b: null, message: false },
  absent: { a: "Object", b: null, message: false },
  flag: { a: null, b: null, message: true },
};

function openRangeDialog(kind = "swap") {
  if (!S.video) return reportError("pick a video first");
  const ids = trackIds();
  fillSelect($("range-a"), ids);
  fillSelect($("range-b"), ids);
  if (S.selected != null) $("range-a").value = S.selected;
  $("range-b").value = ids.find((t) => t !== $("range-a").value) || ids[0] || "";
  $("range-kind").value = kind;
  $("range-from").value = String(S.frame);
  $("range-to").value = String(numFrames() - 1);
  $("range-message").value = "";
  showRangeFields();
  $("range-dialog").showModal();
}

function showRangeFields() {
  const k = RANGE_KINDS[$("range-kind").value];
  $("range-a-label").hidden = !k.a;
  $("range-b-label").hidden = !k.b;
  $("range-message-label").hidden = !k.message;
  $("range-a-name").textContent = k.a || "";
  $("range-b-name").textContent = k.b || "";
}

function runRangeOp() {
  const kind = $("range-kind").value;
  const a = $("range-a").value, b = $("range-b").value;
  const start = Number($("range-from").value), end = Number($("range-to").value);
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end < numFrames())) {
    return reportError(`bad range ${start}..${end} (frames 0..${numFrames() - 1})`);
  }
  if ((kind === "swap" || kind === "merge") && a === b) return reportError(`${kind} needs two different objects`);
  if (kind === "flag") return addFlag(start, end, $("range-message").value.trim() || "revisit");
  if (kind === "absent") { selectTrack(a); return markAbsent(start, end); }
  if (S.locked.has(a) || ((kind === "swap" || kind === "merge") && S.locked.has(b))) return reportError("a locked object takes no edits");
  const body = kind === "swap" ? { a, b, start, end } : kind === "merge" ? { source: a, target: b, start, end } : { track_id: a, start, end };
  return act(kind, async () => {
    const r = await api("POST", videoPath(`/tracks/${kind}`), body);
    await refreshAll({ detail: true });
    if (kind === "split") selectTrack(r.track_id);
    setStatus(`${kind} on frames ${start}..${end} done${kind === "split" ? `: new object ${r.track_id}` : ""}`, "ok");
  });
}

// ---- panels: expressions ----------------------------------------------------------------------
function renderTrackChecks(box, checked, testid) {
  const ids = trackIds();
  box.replaceChildren(...ids.map((id) => el("label", {},
    el("input", { type: "checkbox", checked: checked.has(id), value: id, dataset: { testid, track: id } }),
    el("span", { textContent: ` ${id}`, className: "track-name", dataset: { track: id }, style: { color: S.colors.get(id) } }))));
  if (!ids.length) box.append(el("span", { className: "muted", textContent: "no objects: a no-target expression" }));
}

const checkedTracks = (box) => [...box.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);

function renderExpressions() {
  const items = S.video.expressions.map((e) => {
    const text = el("textarea", { rows: 2, value: e.text, dataset: { testid: "expression-edit-text" } });
    const kind = el("select", { dataset: { testid: "expression-edit-kind" } });
    fillSelect(kind, S.project.kinds);
    kind.value = e.kind;
    const checks = el("div", { className: "checks" });
    renderTrackChecks(checks, new Set(e.track_ids), "expr-track");
    return el("li", { dataset: { exp: e.exp_id, testid: "expression-item" } }, text, checks,
      el("div", { className: "row" }, kind,
        el("button", { textContent: "save", dataset: { testid: "expression-save" },
          onclick: () => saveExpression(e.exp_id, text.value, kind.value, checkedTracks(checks)) }),
        el("button", { textContent: "delete", dataset: { testid: "expression-delete" }, onclick: () => deleteExpression(e.exp_id) }),
        el("span", { className: "muted", textContent: e.exp_id })));
  });
  $("expression-list").replaceChildren(...items);
  if (!items.length) $("expression-list").append(el("li", { className: "muted", textContent: "no expressions yet" }));
}

function addExpression() {
  if (!S.video) return reportError("pick a video first");
  const text = $("expression-text").value.trim();
  if (!text) return reportError("write the expression first");
  const body = { text, track_ids: checkedTracks($("expression-new-tracks")) };
  if ($("expression-kind").value) body.kind = $("expression-kind").value;
  return act("add expression", async () => {
    const r = await api("POST", videoPath("/expressions"), body);
    $("expression-text").value = "";
    for (const c of $("expression-new-tracks").querySelectorAll("input:checked")) c.checked = false;
    await Promise.all([loadVideoDetail(), loadVideos(), loadHistory()]);
    setStatus(`expression ${r.exp_id} added (${body.track_ids.length} object(s))`, "ok");
  });
}

function saveExpression(expId, text, kind, tracks) {
  return act("edit expression", async () => {
    await api("PUT", videoPath(`/expressions/${encodeURIComponent(expId)}`), { text: text.trim(), kind, track_ids: tracks });
    await Promise.all([loadVideoDetail(), loadHistory()]);
    setStatus(`expression ${expId} saved`, "ok");
  });
}

function deleteExpression(expId) {
  return act("delete expression", async () => {
    await api("DELETE", videoPath(`/expressions/${encodeURIComponent(expId)}`));
    await Promise.all([loadVideoDetail(), loadVideos(), loadHistory()]);
    setStatus(`expression ${expId} deleted`, "ok");
  });
}

// ---- panels: history, export ------------------------------------------------------------------
async function loadHistory() {
  try {
    S.history = await api("GET", "/api/history?limit=30");
  } catch (err) {
    reportError(err, "history");
    return;
  }
  $("history-list").replaceChildren(...S.history.map((h) => el("li", {
    className: h.undone_by != null || h.status === "undone" ? "muted" : "", dataset: { testid: "history-item" },
    title: `${h.at} ${h.user} ${h.kind}`,
  }, `#${h.op_id} ${h.label || h.kind}${h.status && h.status !== "done" ? ` (${h.status})` : ""}`)));
}

function runExport() {
  const format = $("export-format").value, name = $("export-name").value.trim();
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return reportError("export name: letters, digits and -_. only");
  $("export-result").textContent = "exporting…";
  return act("export", async () => {
    try {
      const r = await api("POST", "/api/export", { format, name });
      S.lastExport = r;
      $("export-result").textContent = r.path;
      setStatus(`exported ${countVideos(r.videos)} as ${r.format} to ${r.path}`, "ok");
    } catch (err) {
      $("export-result").textContent = "";
      throw err;
    }
  });
}

/** The export's video count: a number, or {split: count} as the server answers. */
function countVideos(videos) {
  if (typeof videos === "number") return `${videos} video(s)`;
  const parts = Object.entries(videos || {}).map(([split, n]) => `${split} ${n}`);
  return `${Object.values(videos || {}).reduce((a, b) => a + b, 0)} video(s) (${parts.join(", ")})`;
}

// ---- panels: review queue ---------------------------------------------------------------------
// Every open flag of the project (audit + annotators), most severe first, as /api/flags sends them.
// The list is virtualised: only the rows in view (plus a few) are in the DOM, whatever the count.
const QUEUE_FETCH = 10000;   // the server's cap on one answer; beyond it the summary says so
const QROW = 66;             // row pitch, px (rows are absolutely placed at i * QROW)
const QOVERSCAN = 6;
const QMAX_ROWS = 200;       // never more rows in the DOM than this, even in a very tall panel

const Q = {
  total: 0, flags: [], checks: new Map(), // checks: name -> count, from the last answer without a check filter
  current: null,                          // {flag_id, index}: the flag last opened from the queue
  loading: 0, loaded: 0, seq: 0, view: "videos",
};

async function loadQueue() {
  const seq = ++Q.seq;
  const severity = $("queue-filter-severity").value, check = $("queue-filter-check").value;
  const q = new URLSearchParams({ limit: String(QUEUE_FETCH) });
  if (severity) q.set("severity", severity);
  if (check) q.set("check", check);
  Q.loading++;
  try {
    const r = await api("GET", `/api/flags?${q}`);
    if (seq !== Q.seq) return; // a newer request (another filter, another dismissal) answers instead
    Q.total = r.total;
    Q.flags = r.flags;
    Q.loaded++;
    if (Q.current) {
      const i = Q.flags.findIndex((f) => f.flag_id === Q.current.flag_id);
      if (i >= 0) Q.current.index = i; // else dismissed: `Q` goes on with the flag now at its place
    }
    if (!check) {
      Q.checks = new Map();
      for (const f of r.flags) Q.checks.set(f.check, (Q.checks.get(f.check) || 0) + 1);
    }
    renderQueue();
  } catch (err) {
    reportError(err, "review queue");
  } finally {
    Q.loading--;
  }
}

/** The check filter's options: the checks of the flags (with counts), keeping the chosen one. */
function renderCheckFilter() {
  const select = $("queue-filter-check");
  const chosen = select.value;
  const names = [...Q.checks.keys()].sort();
  if (chosen && !Q.checks.has(chosen)) names.push(chosen);
  select.replaceChildren(el("option", { value: "", textContent: "all checks" }),
    ...names.map((n) => el("option", { value: n, textContent: Q.checks.has(n) ? `${n} (${Q.checks.get(n)})` : n })));
  select.value = chosen;
}

function renderQueue() {
  renderCheckFilter();
  const filtered = $("queue-filter-severity").value || $("queue-filter-check").value;
  $("queue-count").textContent = filtered ? `${Q.flags.length}` : `${Q.total}`;
  const more = Q.total > Q.flags.length ? ` (the first ${Q.flags.length}: dismiss or filter to see the rest)` : "";
  $("queue-summary").textContent = Q.total ? `${Q.total} open flag(s)${filtered ? " matching" : ""}${more}` : "";
  $("queue-rows").style.height = `${Q.flags.length * QROW}px`;
  renderQueueRows();
}

/** Draw the rows in view of the scroll box (none while the queue view is hidden). */
function renderQueueRows() {
  const box = $("queue-scroll"), list = $("queue-rows");
  if (!Q.flags.length) {
    list.replaceChildren(el("li", { className: "queue-empty", textContent: "no open flags" + (Q.total ? "" : " in this project") }));
    return;
  }
  const height = box.clientHeight;
  const first = Math.max(0, Math.floor(box.scrollTop / QROW) - QOVERSCAN);
  const last = Math.min(Q.flags.length, first + QMAX_ROWS, Math.ceil((box.scrollTop + height) / QROW) + QOVERSCAN);
  const rows = [];
  for (let i = first; i < last && height > 0; i++) rows.push(queueRow(Q.flags[i], i));
  list.replaceChildren(...rows);
}

function queueRow(f, i) {
  const frames = f.frame_start === f.frame_end ? `frame ${f.frame_start}` : `frames ${f.frame_start}..${f.frame_end}`;
  const tracks = f.track_ids.length ? `object${f.track_ids.length > 1 ? "s" : ""} ${f.track_ids.join(", ")}` : "no object";
  const current = Q.current && Q.current.flag_id === f.flag_id;
  return el("li", {
    className: `queue-row${current ? " selected" : ""}`, tabIndex: 0, role: "button",
    dataset: { testid: "queue-row", flag: f.flag_id, pk: f.pk, frame: f.frame_start, index: i },
    style: { top: `${i * QROW}px`, height: `${QROW - 3}px` },
    title: `${f.severity} ${f.check} (${f.source}) on ${f.split}/${f.video_id}, ${frames}, ${tracks}: ${f.message}`,
    onclick: () => openQueueFlag(i),
    onkeydown: (ev) => { if (ev.key === "Enter") { ev.stopPropagation(); openQueueFlag(i); } },
  },
  el("div", { className: "line" },
    el("span", { className: `sev ${f.severity}`, textContent: f.severity }),
    el("span", { className: "check", textContent: f.check }),
    el("span", { className: "frames", textContent: `${f.frame_start}..${f.frame_end}` }),
    el("button", {
      textContent: "dismiss", title: "Dismiss this flag (D on its frame)", dataset: { testid: "queue-dismiss", flag: f.flag_id },
      onclick: (ev) => { ev.stopPropagation(); dismissFlag(f.flag_id); },
    })),
  el("div", { className: "line muted" }, el("span", { textContent: `${f.video_id} · ${f.split} · ${tracks}` })),
  el("div", { className: "message", textContent: f.message || "" }));
}

function setView(view) {
  Q.view = view;
  const queue = view === "queue";
  document.body.classList.toggle("queue-view", queue);
  $("videos-panel").hidden = queue;
  $("review-queue").hidden = !queue;
  for (const [id, on] of [["view-videos", !queue], ["view-queue", queue]]) {
    $(id).classList.toggle("active", on);
    $(id).setAttribute("aria-selected", String(on));
  }
  if (queue) { renderQueueRows(); scrollQueueTo(Q.current ? Q.current.index : 0); }
}

/** Keep row `i` in the scroll box's view. */
function scrollQueueTo(i) {
  const box = $("queue-scroll");
  if (Q.view !== "queue" || !box.clientHeight) return;
  const top = i * QROW;
  if (top < box.scrollTop) box.scrollTop = top;
  else if (top + QROW > box.scrollTop + box.clientHeight) box.scrollTop = top + QROW - box.clientHeight;
  renderQueueRows();
}

/** Open the queue's flag `i`: its video (when another is open), its first frame, its first object. */
async function openQueueFlag(i) {
  const f = Q.flags[i];
  if (!f) return;
  if (S.job) return reportError("wait for the propagation to end (or cancel it)");
  Q.current = { flag_id: f.flag_id, index: i };
  if (f.pk !== S.pk || !S.video) {
    history.replaceState(null, "", `#pk=${f.pk}&f=${f.frame_start}`); // openVideo starts at the hash's frame
    await openVideo(f.pk);
    if (S.pk !== f.pk || !S.video) return;
  }
  goto(f.frame_start);
  followCursor();
  drawTimeline();
  if (f.track_ids.length) selectTrack(f.track_ids[0]);
  scrollQueueTo(i);
  setStatus(`${f.severity} ${f.check} on ${f.video_id}, frames ${f.frame_start}..${f.frame_end}: ${f.message}`);
}

/** The next (1) or previous (-1) flag of the queue after the current one; the first when none is. */
function queueStep(direction) {
  if (!Q.flags.length) { setStatus("the review queue is empty"); return; }
  let j;
  const i = Q.current ? Q.flags.findIndex((f) => f.flag_id === Q.current.flag_id) : -1;
  if (i >= 0) j = i + direction;
  else if (Q.current) j = direction > 0 ? Q.current.index : Q.current.index - 1; // it was dismissed: its successor took its place
  else j = direction > 0 ? 0 : Q.flags.length - 1;
  if (j < 0 || j >= Q.flags.length) { setStatus(`${direction > 0 ? "end" : "start"} of the review queue`); return; }
  openQueueFlag(j);
}

/** The flag `D` dismisses: the queue's current one if it covers this frame, else one on the
 * selected object, else the first covering the frame. */
function flagHere() {
  if (!S.video || !S.lanes) return null;
  const here = (S.lanes.flags || []).filter((f) => f.frame_start <= S.frame && S.frame <= f.frame_end);
  return here.find((f) => Q.current && f.flag_id === Q.current.flag_id)
    || here.find((f) => S.selected != null && f.track_ids.includes(S.selected)) || here[0] || null;
}

function dismissHere() {
  if (!S.video) return;
  const f = flagHere();
  if (!f) { setStatus(`no open flag on frame ${S.frame}`); return; }
  return dismissFlag(f.flag_id);
}

// ---- shortcuts --------------------------------------------------------------------------------
// One table drives both the key handler and the help overlay.
const SHORTCUTS = [
  ["ArrowLeft", "previous frame", () => step(-1)],
  ["ArrowRight", "next frame", () => step(1)],
  ["Shift+ArrowLeft", "10 frames back", () => step(-10)],
  ["Shift+ArrowRight", "10 frames on", () => step(10)],
  ["Home", "first frame", () => goto(0)],
  ["End", "last frame", () => goto(numFrames() - 1)],
  ["1 … 9", "select object 1-9", null],
  ["p", "positive point tool", () => setTool("positive")],
  ["n", "negative point tool", () => setTool("negative")],
  ["b", "box tool", () => setTool("box")],
  ["r", "brush tool", () => setTool("brush")],
  ["e", "eraser tool", () => setTool("eraser")],
  ["v", "pan tool (or hold Space)", () => setTool("pan")],
  ["Alt+ArrowUp", "bigger brush", () => setRadius(S.radius + 2)],
  ["Alt+ArrowDown", "smaller brush", () => setRadius(S.radius - 2)],
  ["+", "zoom in", () => zoomAt(1.25)],
  ["-", "zoom out", () => zoomAt(0.8)],
  ["=", "zoom in", () => zoomAt(1.25)],
  ["0", "fit the frame", zoomFit],
  ["]", "propagate forward", () => propagate("forward")],
  ["[", "propagate backward", () => propagate("backward")],
  ["\\", "propagate both ways", () => propagate("both")],
  ["Escape", "cancel propagation / drag, close dialogs", escape],
  ["a", "selected object absent here", () => markAbsent()],
  ["Shift+a", "absent over a range…", () => openRangeDialog("absent")],
  ["c", "clear the clicks of this frame", clearClicks],
  ["t", "swap / merge / split over a range…", () => openRangeDialog("swap")],
  ["Ctrl+z", "undo", () => undoRedo("undo")],
  ["Ctrl+Shift+z", "redo", () => undoRedo("redo")],
  ["Ctrl+y", "redo", () => undoRedo("redo")],
  ["o", "add an object", addObject],
  [".", "next unreviewed frame", () => jump("unreviewed", 1)],
  [",", "previous unreviewed frame", () => jump("unreviewed", -1)],
  ["k", "next keyframe (selected object)", () => jump("keyframe", 1)],
  ["Shift+k", "previous keyframe", () => jump("keyframe", -1)],
  ["g", "next flagged frame", () => jump("flagged", 1)],
  ["Shift+g", "previous flagged frame", () => jump("flagged", -1)],
  ["x", "next absent frame (selected object)", () => jump("absent", 1)],
  ["Shift+x", "previous absent frame", () => jump("absent", -1)],
  ["f", "flag this frame", () => addFlag()],
  ["d", "dismiss the flag on this frame", () => dismissHere()],
  ["q", "next flag in the review queue", () => queueStep(1)],
  ["Shift+q", "previous flag in the review queue", () => queueStep(-1)],
  ["h", "hide / show the selected object", () => toggleHidden()],
  ["l", "lock / unlock the selected object", () => toggleLocked()],
  ["?", "this help", toggleHelp],
];
const KEYMAP = new Map(SHORTCUTS.filter(([, , fn]) => fn).map(([k, , fn]) => [k, fn]));

/** "Ctrl+Shift+z" style name of a key event; Shift is dropped for symbols it already made ("?", "+"). */
function keyName(ev) {
  let key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  const letter = /^[a-z]$/.test(key);
  const mods = [];
  if (ev.ctrlKey || ev.metaKey) mods.push("Ctrl");
  if (ev.altKey) mods.push("Alt");
  if (ev.shiftKey && (letter || key.length > 1)) mods.push("Shift");
  return [...mods, key].join("+");
}

function isTyping(target) {
  if (!target || !target.tagName) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && !["checkbox", "radio", "range", "button", "color"].includes(target.type);
}

function onKeyDown(ev) {
  if (ev.key === " " && !isTyping(ev.target)) {
    spaceHeld = true;
    $("stage").classList.add("panning");
    ev.preventDefault();
    return;
  }
  if ($("range-dialog").open) return; // the dialog has its own keys (Esc closes it natively)
  if (isTyping(ev.target)) {
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  const name = keyName(ev);
  if (!ev.ctrlKey && !ev.altKey && !ev.metaKey && /^[1-9]$/.test(name)) {
    selectIndex(Number(name) - 1);
    ev.preventDefault();
    return;
  }
  const fn = KEYMAP.get(name);
  if (!fn) return;
  ev.preventDefault();
  fn();
}

function onKeyUp(ev) {
  if (ev.key === " ") {
    spaceHeld = false;
    $("stage").classList.remove("panning");
  }
}

function step(delta) { goto(S.frame + delta); followCursor(); }

function setRadius(r) {
  S.radius = clamp(Math.round(r), 1, 80);
  $("radius").value = String(S.radius);
  $("radius-value").textContent = String(S.radius);
  draw();
}

function escape() {
  if (!$("help").hidden) { toggleHelp(); return; }
  if (drag) { drag = null; draw(); return; }
  if (S.job) cancelJob();
}

async function jump(what, direction) {
  if (!S.video) return;
  const q = new URLSearchParams({ frame: String(S.frame), what, direction: String(direction) });
  if ((what === "keyframe" || what === "absent") && S.selected != null) q.set("track_id", S.selected);
  try {
    const r = await api("GET", videoPath(`/next?${q}`));
    if (r.frame == null) setStatus(`no ${what} frame ${direction > 0 ? "after" : "before"} ${S.frame}`);
    else { goto(r.frame); followCursor(); }
  } catch (err) {
    reportError(err, `next ${what}`);
  }
}

function toggleHelp() {
  const help = $("help");
  if (help.hidden && !$("help-table").childElementCount) {
    $("help-table").replaceChildren(...SHORTCUTS.map(([k, label]) => el("tr", {},
      el("td", {}, el("kbd", { textContent: k === " " ? "Space" : k })), el("td", { textContent: label }))),
    el("tr", {}, el("td", {}, el("kbd", { textContent: "Space + drag" })), el("td", { textContent: "pan" })));
  }
  help.hidden = !help.hidden;
}

// ---- start ------------------------------------------------------------------------------------
function bindControls() {
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("radius").addEventListener("input", (ev) => setRadius(Number(ev.target.value)));
  $("opacity").addEventListener("input", (ev) => { S.opacity = Number(ev.target.value); draw(); });
  $("zoom-in").addEventListener("click", () => zoomAt(1.25));
  $("zoom-out").addEventListener("click", () => zoomAt(0.8));
  $("zoom-fit").addEventListener("click", zoomFit);
  $("clear-clicks").addEventListener("click", clearClicks);
  $("absent").addEventListener("click", () => markAbsent());
  $("flag").addEventListener("click", () => addFlag());
  $("range-ops").addEventListener("click", () => openRangeDialog("swap"));
  $("range-kind").addEventListener("change", showRangeFields);
  $("range-form").addEventListener("submit", (ev) => {
    if (ev.submitter && ev.submitter.value === "run") runRangeOp();
  });
  $("propagate-forward").addEventListener("click", () => propagate("forward"));
  $("propagate-backward").addEventListener("click", () => propagate("backward"));
  $("propagate-both").addEventListener("click", () => propagate("both"));
  $("cancel").addEventListener("click", cancelJob);
  $("jump-prev").addEventListener("click", () => jump($("jump-what").value, -1));
  $("jump-next").addEventListener("click", () => jump($("jump-what").value, 1));
  $("frame-prev").addEventListener("click", () => step(-1));
  $("frame-next").addEventListener("click", () => step(1));
  $("frame-index").addEventListener("change", (ev) => { goto(Number(ev.target.value)); followCursor(); });
  $("frame-index").addEventListener("keydown", (ev) => { if (ev.key === "Enter") ev.target.blur(); });
  $("frame-index").addEventListener("blur", showFrameIndex);
  $("undo").addEventListener("click", () => undoRedo("undo"));
  $("redo").addEventListener("click", () => undoRedo("redo"));
  $("export-run").addEventListener("click", runExport);
  $("help-open").addEventListener("click", toggleHelp);
  $("help-close").addEventListener("click", toggleHelp);
  $("add-object").addEventListener("click", addObject);
  $("expression-add").addEventListener("click", addExpression);
  $("history-refresh").addEventListener("click", loadHistory);
  $("video-filter").addEventListener("change", renderVideos);
  $("view-videos").addEventListener("click", () => setView("videos"));
  $("view-queue").addEventListener("click", () => setView("queue"));
  for (const id of ["queue-filter-severity", "queue-filter-check"]) {
    $(id).addEventListener("change", () => { Q.current = null; $("queue-scroll").scrollTop = 0; loadQueue(); });
  }
  $("queue-refresh").addEventListener("click", loadQueue);
  $("queue-scroll").addEventListener("scroll", () => requestAnimationFrame(renderQueueRows), { passive: true });
  $("video-status").addEventListener("change", (ev) => setVideoField("status", ev.target.value));
  $("video-assignee").addEventListener("change", (ev) => setVideoField("assignee", ev.target.value.trim()));
  window.addEventListener("keydown", onKeyDown);
  window.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", () => { spaceHeld = false; });
  window.addEventListener("error", (ev) => {
    // the browser's benign "ResizeObserver loop" notice is no error of ours
    if (!String(ev.message).startsWith("ResizeObserver loop")) reportError(ev.message || "script error");
  });
  window.addEventListener("unhandledrejection", (ev) => reportError(ev.reason, "unexpected"));
  observeSize($("stage"), layoutCanvas);
  observeSize($("timeline-wrap"), layoutTimeline, true);
  observeSize($("queue-scroll"), renderQueueRows);
}

/** Call `fn` (in the next frame) when `node`'s size changes; `widthOnly` for boxes whose height we set. */
function observeSize(node, fn, widthOnly = false) {
  let last = "";
  new ResizeObserver(([entry]) => {
    const r = entry.contentRect;
    const key = widthOnly ? `${r.width}` : `${r.width}x${r.height}`;
    if (key === last) return;
    last = key;
    requestAnimationFrame(fn);
  }).observe(node);
}

async function start() {
  bindControls();
  bindCanvas();
  bindTimeline();
  setTool("positive");
  try {
    await loadProject();
    await loadVideos();
    loadHistory();
    loadQueue();
    setStatus(`${S.videos.length} video(s); pick one`);
    const pk = hashPk();
    if (S.videos.some((v) => v.pk === pk)) await openVideo(pk);
  } catch (err) {
    reportError(err, "loading the project");
  }
}

start();
