// masktrack app: prompts per frame and object, proposals, runs with live progress, playback and exports.
"use strict";

const $ = (id) => document.getElementById(id);
const HEADERS = { "X-Requested-By": "masktrack" };
const S = {
  info: null, frame: 0, object: 1, objects: [1], tool: "box", overlay: true, version: 0,
  prompts: {},      // frame -> {objectId: {box, points, strokes}}
  history: {},      // frame -> [previous prompts JSON]
  drag: null,       // the gesture under way: {kind, start, end, stroke}
  image: null, playing: null, polling: null, busy: false,
};
const cache = new Map();  // image URL -> loaded Image (playback)

// --- server -------------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { ...HEADERS, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

async function refresh() {
  S.info = await api("/api/info");
  S.version = S.info.version;
  for (const id of S.info.objects) if (!S.objects.includes(id)) S.objects.push(id);
  S.objects.sort((a, b) => a - b);
  const video = S.info.video;
  $("drop").hidden = !!video;
  $("video-name").textContent = video ? `${video.name} · ${video.frames} frames · ${video.width}×${video.height}` : "no video open";
  if (video) {
    $("scrub").max = video.frames - 1;
    S.frame = Math.min(S.frame, video.frames - 1);
  }
  renderObjects(); renderExports(); renderJob(S.info.job);
  await showFrame(S.frame);
  if (S.info.job.state === "running") poll();
}

// --- frame view ---------------------------------------------------------------------------

function viewUrl(index) {
  return S.overlay ? `/api/view/${index}.jpg?v=${S.version}` : `/api/frame/${index}.jpg`;
}

function loadImage(url) {
  if (cache.has(url)) return cache.get(url);
  const promise = new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => { cache.delete(url); reject(new Error(`cannot load ${url}`)); };
    image.src = url;
  });
  cache.set(url, promise);
  if (cache.size > 600) cache.delete(cache.keys().next().value);
  return promise;
}

async function showFrame(index) {
  const video = S.info && S.info.video;
  if (!video) { draw(); return; }
  S.frame = Math.max(0, Math.min(index, video.frames - 1));
  $("scrub").value = S.frame;
  $("frame-label").textContent = `${S.frame} / ${video.frames - 1}`;
  const wanted = S.frame;
  const image = await loadImage(viewUrl(wanted)).catch(() => null);
  if (image && wanted === S.frame) { S.image = image; draw(); }
  drawTimeline();
}

function colour(id) {
  const [r, g, b] = (S.info && S.info.palette[id]) || [255, 255, 255];
  return `rgb(${r},${g},${b})`;
}

function draw() {
  const canvas = $("canvas"), video = S.info && S.info.video;
  if (!video) return;
  if (canvas.width !== video.width || canvas.height !== video.height) { canvas.width = video.width; canvas.height = video.height; fitCanvas(); }
  const context = canvas.getContext("2d");
  if (S.image) context.drawImage(S.image, 0, 0, canvas.width, canvas.height);
  const line = Math.max(1.5, video.width / 320);
  for (const [id, prompt] of Object.entries(S.prompts[S.frame] || {})) drawPrompt(context, +id, prompt, line);
  const drag = S.drag;
  if (drag && drag.kind === "box") drawBox(context, boxOf(drag.start, drag.end), colour(S.object), line);
  if (drag && drag.kind === "stroke") drawStroke(context, drag.stroke, colour(S.object));
  if (S.hover && !drag && (S.tool === "brush" || S.tool === "eraser")) {
    context.beginPath(); context.arc(S.hover[0], S.hover[1], brushRadius(), 0, 2 * Math.PI);
    context.lineWidth = line / 1.5; context.strokeStyle = "#fff"; context.stroke();
  }
}

function fitCanvas() {
  // the frame as large as the viewer allows, aspect kept (the canvas keeps the frame's pixels)
  const viewer = $("viewer"), canvas = $("canvas");
  const scale = Math.min(viewer.clientWidth / canvas.width, viewer.clientHeight / canvas.height);
  canvas.style.width = `${Math.floor(canvas.width * scale)}px`;
  canvas.style.height = `${Math.floor(canvas.height * scale)}px`;
}

function brushRadius() {
  // the slider is the brush diameter in screen pixels
  const canvas = $("canvas"), shown = canvas.getBoundingClientRect().width || canvas.width;
  return Math.max(1, Math.round(((+$("brush-size").value / 2) * canvas.width) / shown));
}

function drawPrompt(context, id, prompt, line) {
  if (prompt.box) drawBox(context, prompt.box, colour(id), line);
  for (const [x, y, positive] of prompt.points) {
    context.beginPath(); context.arc(x, y, 2.5 * line, 0, 2 * Math.PI);
    context.fillStyle = positive ? "#3ccf7a" : "#ff5d5d"; context.fill();
    context.lineWidth = line; context.strokeStyle = "#fff"; context.stroke();
  }
}

function drawBox(context, [x, y, w, h], style, line) {
  context.lineWidth = 2.5 * line; context.strokeStyle = "rgba(255,255,255,0.85)";
  context.strokeRect(x + 0.5, y + 0.5, w, h);
  context.setLineDash([4 * line, 3 * line]); context.lineWidth = 1.2 * line; context.strokeStyle = style;
  context.strokeRect(x + 0.5, y + 0.5, w, h); context.setLineDash([]);
}

function drawStroke(context, stroke, style) {
  context.save();
  context.globalAlpha = 0.55; context.strokeStyle = stroke.erase ? "#000" : style;
  context.lineWidth = 2 * stroke.radius; context.lineCap = "round"; context.lineJoin = "round";
  context.beginPath();
  stroke.points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
  if (stroke.points.length === 1) context.lineTo(stroke.points[0][0] + 0.1, stroke.points[0][1]);
  context.stroke(); context.restore();
}

function drawTimeline() {
  const canvas = $("timeline"), video = S.info && S.info.video;
  canvas.width = canvas.clientWidth || 600;
  const context = canvas.getContext("2d"), height = canvas.height;
  context.clearRect(0, 0, canvas.width, height);
  if (!video) return;
  const step = canvas.width / video.frames, areas = S.info.areas, top = 10;
  const peak = {};
  for (const frame of Object.values(areas)) for (const [id, a] of Object.entries(frame)) peak[id] = Math.max(peak[id] || 0, a);
  for (const [index, frame] of Object.entries(areas)) {
    let y = height;
    for (const [id, a] of Object.entries(frame)) {
      const h = ((height - top) * a) / peak[id] / Math.max(1, Object.keys(peak).length);
      context.fillStyle = colour(+id); context.fillRect(index * step, y - h, Math.max(1, step - 0.5), h); y -= h;
    }
  }
  context.fillStyle = "#fff";
  for (const index of S.info.given) marker(context, index * step + step / 2, "▼");
  context.fillStyle = "#ffd34d";
  for (const index of new Set([...S.info.pending, ...Object.keys(S.prompts).map(Number)])) marker(context, index * step + step / 2, "●");
  context.fillStyle = "rgba(79,140,255,0.25)"; context.fillRect(S.frame * step, 0, Math.max(2, step), height);
  context.fillStyle = "#4f8cff"; context.fillRect(S.frame * step + step / 2 - 1, 0, 2, height);
}

function marker(context, x, glyph) {
  context.font = "9px sans-serif"; context.textAlign = "center"; context.fillText(glyph, x, 9);
}

// --- prompts ------------------------------------------------------------------------------

function pointer(event) {
  const canvas = $("canvas"), rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
  return [Math.round(Math.max(0, Math.min(canvas.width - 1, x))), Math.round(Math.max(0, Math.min(canvas.height - 1, y)))];
}

function boxOf([x0, y0], [x1, y1]) {
  return [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)];
}

function promptOf(frame, id) {
  const prompts = (S.prompts[frame] = S.prompts[frame] || {});
  return (prompts[id] = prompts[id] || { box: null, points: [], strokes: [] });
}

function remember() {
  (S.history[S.frame] = S.history[S.frame] || []).push(JSON.stringify(S.prompts[S.frame] || {}));
}

function onPointerDown(event) {
  if (!S.info || !S.info.video || S.busy || S.playing) return;
  event.preventDefault();
  $("canvas").setPointerCapture(event.pointerId);
  const at = pointer(event);
  if (S.tool === "positive" || S.tool === "negative") {
    remember();
    promptOf(S.frame, S.object).points.push([...at, S.tool === "positive" && event.button !== 2]);
    propose();
  } else if (S.tool === "box") {
    S.drag = { kind: "box", start: at, end: at };
  } else {
    S.drag = { kind: "stroke", stroke: { points: [at], radius: brushRadius(), erase: S.tool === "eraser" } };
  }
  draw();
}

function onPointerMove(event) {
  const at = pointer(event);
  S.hover = at;
  if (!S.drag) { if (S.tool === "brush" || S.tool === "eraser") draw(); return; }
  if (S.drag.kind === "box") S.drag.end = at;
  else {
    const points = S.drag.stroke.points, [px, py] = points[points.length - 1];
    if (Math.hypot(at[0] - px, at[1] - py) >= 1.5) points.push(at);
  }
  draw();
}

function onPointerUp(event) {
  const drag = S.drag;
  if (!drag) return;
  S.drag = null;
  remember();
  if (drag.kind === "box") {
    const box = boxOf(drag.start, pointer(event));
    if (box[2] < 3 || box[3] < 3) { S.history[S.frame].pop(); draw(); return; }
    promptOf(S.frame, S.object).box = box;
  } else {
    promptOf(S.frame, S.object).strokes.push(drag.stroke);
  }
  propose();
}

async function propose() {
  draw();
  const frame = S.frame, prompts = S.prompts[frame] || {};
  const objects = Object.entries(prompts).map(([id, p]) => ({ id: +id, ...p }));
  say(objects.length ? "proposing…" : "");
  try {
    const reply = objects.length ? await api("/api/propose", { frame, objects }) : await api("/api/clear", { frame });
    if (!objects.length) delete S.prompts[frame];
    S.version = reply.version;
    await refreshInfo();
    if (frame === S.frame) await showFrame(frame);
    say(objects.length ? `frame ${frame}: proposal for object${reply.objects.length === 1 ? "" : "s"} ${reply.objects.join(", ") || "(none)"}` : "");
  } catch (error) { say(error.message, true); }
}

async function refreshInfo() {
  S.info = await api("/api/info");
  S.version = S.info.version;
  for (const id of S.info.objects) if (!S.objects.includes(id)) S.objects.push(id);
  renderObjects(); renderExports(); drawTimeline();
}

function undo() {
  const history = S.history[S.frame];
  if (!history || !history.length) return;
  const previous = JSON.parse(history.pop());
  if (Object.keys(previous).length) S.prompts[S.frame] = previous; else delete S.prompts[S.frame];
  propose();
}

function clearFrame() {
  remember();
  delete S.prompts[S.frame];
  propose();
}

function removeObject() {
  remember();
  S.prompts[S.frame] = S.prompts[S.frame] || {};
  S.prompts[S.frame][S.object] = { box: null, points: [], strokes: [] };  // no prompt: the object leaves this frame
  propose();
}

// --- objects, tools -----------------------------------------------------------------------

function renderObjects() {
  const list = $("objects");
  list.replaceChildren();
  for (const id of S.objects) {
    const item = document.createElement("li"), swatch = document.createElement("span"), count = document.createElement("span");
    swatch.className = "swatch"; swatch.style.background = colour(id);
    count.className = "count";
    const frames = Object.values((S.info && S.info.areas) || {}).filter((areas) => areas[id]).length;
    count.textContent = frames ? `${frames} fr` : "";
    item.append(swatch, `Object ${id}`, count);
    item.classList.toggle("selected", id === S.object);
    item.onclick = () => { S.object = id; renderObjects(); };
    list.append(item);
  }
}

function newObject() {
  const id = Math.max(0, ...S.objects) + 1;
  if (id > 254) return say("at most 254 objects", true);
  S.objects.push(id); S.object = id; renderObjects();
}

function setTool(tool) {
  S.tool = tool;
  for (const button of document.querySelectorAll("#tools button")) button.classList.toggle("active", button.dataset.tool === tool);
}

// --- run, progress ------------------------------------------------------------------------

async function run() {
  try {
    await api("/api/run", {});
    S.prompts = {}; S.history = {};  // the server took this run's proposals
    say("segmenting…");
    draw();
    await refreshInfo();
    poll();
  } catch (error) { say(error.message, true); }
}

function renderJob(job) {
  const running = job.state === "running";
  S.busy = running;
  $("run").disabled = running || !(S.info && S.info.video);
  $("progress-bar").style.width = job.total ? `${(100 * job.done) / job.total}%` : job.state === "done" ? "100%" : "0";
  const text = $("progress-text");
  text.classList.toggle("error", job.state === "failed");
  if (running && job.stage === "fine-tuning") text.textContent = `fine-tuning: step ${job.done} of ${job.steps} · ${job.seconds} s`;
  else if (running) text.textContent = `segmenting: frame ${job.last} (${job.done - job.steps} of ${job.total - job.steps}) · ${job.seconds} s`;
  else if (job.state === "done") text.textContent = `done in ${job.seconds} s: ${job.message}`;
  else if (job.state === "failed") text.textContent = `failed: ${job.message}`;
}

function poll() {
  if (S.polling) return;
  S.polling = setInterval(async () => {
    try {
      const status = await api("/api/status");
      renderJob(status.job);
      if (status.version !== S.version) { S.version = status.version; showFrame(S.frame); }
      if (status.job.state !== "running") {
        clearInterval(S.polling); S.polling = null;
        await refreshInfo(); await showFrame(S.frame);
        say(status.job.state === "done" ? "segmentation finished: play it, correct a frame, or export" : status.job.message, status.job.state === "failed");
      }
    } catch (error) { say(error.message, true); }
  }, 400);
}

function renderExports() {
  const ready = !!(S.info && S.info.results.length) && !S.busy;
  for (const link of document.querySelectorAll("#exports a")) {
    link.classList.toggle("disabled", !ready);
    if (ready) { link.href = `/api/export/${link.dataset.export}?v=${S.version}`; link.download = ""; }
    else link.removeAttribute("href");
  }
}

// --- playback -----------------------------------------------------------------------------

function togglePlay() {
  if (S.playing) { clearTimeout(S.playing); S.playing = null; $("play").textContent = "▶"; return; }
  const video = S.info && S.info.video;
  if (!video) return;
  if (S.frame >= video.frames - 1) S.frame = 0;
  $("play").textContent = "❚❚";
  const tick = async () => {
    const started = performance.now();
    await showFrame(S.frame);
    for (let ahead = 1; ahead <= 8 && S.frame + ahead < video.frames; ahead++) loadImage(viewUrl(S.frame + ahead)).catch(() => {});
    if (S.frame >= video.frames - 1) { S.playing = 1; togglePlay(); return; }
    S.frame += 1;
    S.playing = setTimeout(tick, Math.max(0, 1000 / video.fps - (performance.now() - started)));
  };
  S.playing = setTimeout(tick, 0);
}

// --- open ---------------------------------------------------------------------------------

function upload(file) {
  if (!file) return;
  const limit = S.info ? S.info.max_upload : Infinity;
  if (file.size > limit) return say(`${file.name} is over the ${Math.round(limit / 2 ** 20)} MB upload limit`, true);
  const request = new XMLHttpRequest();
  request.open("POST", `/api/upload?name=${encodeURIComponent(file.name)}`);
  request.setRequestHeader("X-Requested-By", "masktrack");
  request.upload.onprogress = (event) => say(`uploading ${file.name}: ${Math.round((100 * event.loaded) / (event.total || 1))}%`);
  request.upload.onload = () => say(`reading ${file.name}…`);
  request.onload = async () => {
    let reply = {};
    try { reply = JSON.parse(request.responseText); } catch (error) { reply = {}; }
    if (request.status !== 200) return say(reply.error || `upload failed (${request.status})`, true);
    S.prompts = {}; S.history = {}; S.frame = 0; S.objects = [1]; S.object = 1; cache.clear();
    await refresh();
    say(`opened ${file.name}: draw a box around an object`);
  };
  request.onerror = () => say("upload failed: the server did not answer", true);
  request.send(file);
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  for (const button of document.querySelectorAll("#tools button")) button.onclick = () => setTool(button.dataset.tool);
  $("new-object").onclick = newObject;
  $("undo").onclick = undo;
  $("clear-frame").onclick = clearFrame;
  $("remove-object").onclick = removeObject;
  $("run").onclick = run;
  $("play").onclick = togglePlay;
  $("prev").onclick = () => showFrame(S.frame - 1);
  $("next").onclick = () => showFrame(S.frame + 1);
  $("scrub").oninput = () => showFrame(+$("scrub").value);
  $("show-overlay").onchange = () => { S.overlay = $("show-overlay").checked; showFrame(S.frame); };
  $("open-file").onchange = () => upload($("open-file").files[0]);
  $("timeline").onclick = (event) => {
    const rect = $("timeline").getBoundingClientRect(), video = S.info && S.info.video;
    if (video) showFrame(Math.floor(((event.clientX - rect.left) / rect.width) * video.frames));
  };
  const drop = $("viewer");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); $("drop").classList.add("over"); });
  drop.addEventListener("dragleave", () => $("drop").classList.remove("over"));
  drop.addEventListener("drop", (event) => { event.preventDefault(); $("drop").classList.remove("over"); upload(event.dataTransfer.files[0]); });
  document.addEventListener("keydown", onKey);
  canvas.addEventListener("pointerleave", () => { S.hover = null; draw(); });
  window.addEventListener("resize", () => { fitCanvas(); drawTimeline(); });
}

function onKey(event) {
  if (event.target.tagName === "INPUT" && event.target.type !== "range") return;
  const keys = { b: "box", p: "positive", n: "negative", r: "brush", e: "eraser" };
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); }
  else if (event.key === "ArrowLeft") { event.preventDefault(); showFrame(S.frame - 1); }
  else if (event.key === "ArrowRight") { event.preventDefault(); showFrame(S.frame + 1); }
  else if (event.key === " ") { event.preventDefault(); togglePlay(); }
  else if (event.key === "o") { $("show-overlay").click(); }
  else if (keys[event.key]) setTool(keys[event.key]);
  else if (/^[1-9]$/.test(event.key) && S.objects.includes(+event.key)) { S.object = +event.key; renderObjects(); }
}

wire();
setTool("box");
refresh().catch((error) => say(error.message, true));
