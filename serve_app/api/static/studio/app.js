// Songsmith Studio: a plain ES module over the HTTP API (no build step, no dependencies).
//
// The bearer token lives in this tab's sessionStorage and travels only in Authorization headers.
// A song's live events come from GET v1/songs/{id}/events read with fetch (EventSource cannot send
// headers): the body is parsed as Server-Sent Events and the stream is resumed with Last-Event-ID.
// Every URL is relative to the page (served at <prefix>/studio), so a route prefix just works.

const TOKEN_KEY = "songsmith.studio.token";
const STAGES = ["writing", "painting", "composing", "encoding", "uploading"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const MODE_LABELS = {
  description: "from a description", lyrics: "tags and lyrics", described_lyrics: "tags and described lyrics",
  cover: "cover", repaint: "repaint", extend: "extend", extract: "extract", lego: "lego", complete: "complete",
};
const WAVE_MAX_S = 360; // longer takes: the range inputs only (decoding would be heavy)
const RECONNECT_MAX_MS = 10000;

const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let current = null; // the job on screen
let watcher = null; // AbortController of its event stream
let libraryCursor = null;
let editFormFor = null; // the song whose result the edit form was last set up for
let capabilities = null; // GET /v1/capabilities: the tasks this server runs, and why not the others
const wave = { url: null, peaks: null, duration: 0, drag: null };

// ------------------------------------------------------------------ small helpers

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function randomKey() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only (https, localhost)
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

function fmtTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

function notice(message) {
  const n = $("notice");
  n.textContent = message || "";
  n.hidden = !message;
}

function flash(message) {
  $("flash").textContent = message;
}

function report(err) {
  if (err?.name === "AbortError") return;
  if (err instanceof ApiError && err.status === 401) {
    notice("The token was refused (401). Enter a valid API token.");
    return;
  }
  notice(err?.message || String(err));
}

function num(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

function text(id) {
  const v = $(id).value;
  return v.trim() === "" ? undefined : v;
}

function compact(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

function songTitle(job) {
  if (job.result?.title) return job.result.title;
  const r = job.request || {};
  const words = r.full_described_song || r.prompt || r.described_lyrics || "Untitled song";
  return words.length > 60 ? `${words.slice(0, 57)}…` : words;
}

// ------------------------------------------------------------------ the API

async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  if (!token) throw new ApiError(0, "Enter your API token first.");
  const h = { Authorization: `Bearer ${token}`, Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers: h, signal, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return null;
  const raw = await r.text();
  let data = null;
  try { data = raw ? JSON.parse(raw) : null; } catch { data = null; }
  if (!r.ok) {
    let msg = data?.message ?? data?.detail ?? `${r.status} ${r.statusText}`;
    if (typeof msg !== "string") msg = JSON.stringify(msg);
    if (r.status === 429 && r.headers.get("Retry-After")) msg += ` (retry in ${r.headers.get("Retry-After")} s)`;
    throw new ApiError(r.status, msg);
  }
  return data;
}

// Server-Sent Events from a fetch body: yields {event, data, id} per dispatched event.
async function* readSse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data = [];
  let event = "";
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id };
          data = [];
          event = "";
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the server's keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") data.push(val);
        else if (field === "event") event = val;
        else if (field === "id" && !val.includes("\0")) id = val;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// Follow a job's events until its terminal status; reconnects (with backoff) from the last id seen.
async function follow(jobId, lastId, onEvent, signal) {
  let last = lastId;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
      if (last !== null && last !== undefined) headers["Last-Event-ID"] = String(last);
      const r = await fetch(`v1/songs/${jobId}/events`, { headers, signal, cache: "no-store" });
      if (r.status === 401 || r.status === 404) throw new ApiError(r.status, `events: ${r.status}`);
      if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
      delay = 500;
      for await (const ev of readSse(r.body)) {
        if (ev.id !== null) last = Number(ev.id);
        let payload;
        try { payload = JSON.parse(ev.data); } catch { continue; }
        onEvent(ev.event, payload.data || {});
        if (ev.event === "status" && TERMINAL.has(payload.data?.status)) return;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError) throw err; // no point reconnecting
    }
    await sleep(delay, signal); // the stream ended early (a restart, a proxy): pick up where it left off
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
  }
}

// ------------------------------------------------------------------ token

function showToken() {
  $("token-forget").hidden = !token;
  $("token-state").textContent = token ? "Token set for this tab." : "No token.";
}

async function useToken(value) {
  const previous = token;
  token = value.trim();
  if (!token) return;
  try {
    await api("auth-status", { method: "POST" });
  } catch (err) {
    token = previous;
    if (err instanceof ApiError && err.status === 401) notice("That token was refused (401).");
    else report(err);
    showToken();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  notice("");
  showToken();
  await Promise.all([loadLibrary(), loadCapabilities()]);
}

function forgetToken() {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  stopWatching();
  current = null;
  $("song").hidden = true;
  $("song-empty").hidden = false;
  $("library-list").replaceChildren();
  $("library-more").hidden = true;
  showToken();
  $("token").focus();
}

// ------------------------------------------------------------------ library

function statusBadge(status) {
  return el("span", { className: "badge", dataset: { status } }, status);
}

function libraryItem(job) {
  const button = el("button", { type: "button", className: "item" },
    el("span", { className: "item-title" }, songTitle(job)),
    statusBadge(job.status),
    el("span", { className: "muted item-when" }, `${MODE_LABELS[job.mode] || job.mode} · ${fmtTime(job.created_at)}`));
  button.addEventListener("click", () => openSong(job.id).catch(report));
  if (current?.id === job.id) button.setAttribute("aria-current", "true");
  return el("li", { dataset: { id: job.id, status: job.status } }, button);
}

function upsertLibrary(job, { prepend = false } = {}) {
  const list = $("library-list");
  const old = list.querySelector(`li[data-id="${job.id}"]`);
  const fresh = libraryItem(job);
  if (old) old.replaceWith(fresh);
  else if (prepend) list.prepend(fresh);
  else return;
  $("library-empty").hidden = true;
}

function markCurrentInLibrary() {
  for (const b of $("library-list").querySelectorAll("button.item")) b.removeAttribute("aria-current");
  if (current) $("library-list").querySelector(`li[data-id="${current.id}"] button`)?.setAttribute("aria-current", "true");
}

async function loadLibrary({ more = false } = {}) {
  if (!token) return;
  const params = new URLSearchParams({ limit: "20" });
  const status = $("library-status").value;
  if (status) params.append("status", status);
  if (more && libraryCursor) params.set("cursor", libraryCursor);
  const page = await api(`v1/songs?${params}`);
  const list = $("library-list");
  if (!more) list.replaceChildren();
  for (const job of page.items) list.append(libraryItem(job));
  libraryCursor = page.next_cursor;
  $("library-more").hidden = !libraryCursor;
  $("library-empty").hidden = list.children.length > 0;
}

// ------------------------------------------------------------------ the song on screen

function stopWatching() {
  watcher?.abort();
  watcher = null;
}

function setStages(stage, status, progress) {
  const at = STAGES.indexOf(stage);
  for (const li of $("song-stages").children) {
    const i = STAGES.indexOf(li.dataset.stage);
    let state = "pending";
    if (status === "succeeded" || (at >= 0 && i < at)) state = "done";
    else if (i === at && status === "running") state = "active";
    li.dataset.state = state;
    if (state === "active") li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
    if (li.dataset.stage === "composing" && progress && stage === "composing" && progress.total) {
      li.dataset.step = progress.step;
      li.dataset.total = progress.total;
    }
    const steps = li.dataset.total ? ` (step ${li.dataset.step} of ${li.dataset.total})` : "";
    li.textContent = li.dataset.stage + (li.dataset.stage === "composing" ? steps : "");
  }
}

function setStatus(job) {
  const s = $("song-status");
  const { status, stage, progress } = job;
  s.dataset.status = status;
  let words = status;
  if (status === "queued" && job.queue_position) words += ` (position ${job.queue_position})`;
  if (status === "running" && stage) {
    words += ` · ${stage}`;
    if (stage === "composing" && progress?.total) words += `, step ${progress.step} of ${progress.total}`;
  }
  if (job.cancel_requested && !TERMINAL.has(status)) words += " · cancelling";
  s.textContent = `Status: ${words}`;
  const bar = $("song-progress");
  if (status === "succeeded") { bar.max = 1; bar.value = 1; }
  else if (stage === "composing" && progress?.total) { bar.max = progress.total; bar.value = progress.step; }
  else if (status !== "running") { bar.max = 1; bar.value = 0; }
  setStages(stage, status, progress);
  $("song-cancel").hidden = TERMINAL.has(status);
}

function onEvent(type, data) {
  if (!current) return;
  if (type === "status") {
    current = { ...current, status: data.status };
    if (data.status !== "running") current.stage = null;
    if (data.error) current.error = data.error;
  } else if (type === "stage") {
    current = { ...current, status: "running", stage: data.stage, progress: null };
  } else if (type === "progress") {
    current = { ...current, status: "running", stage: data.stage || current.stage,
      progress: { step: data.step, total: data.total } };
  } else if (type === "cancel_requested") {
    current = { ...current, cancel_requested: true };
  } else {
    return;
  }
  setStatus(current);
  if (type === "status") upsertLibrary(current);
}

function watch(job) {
  stopWatching();
  const ctl = new AbortController();
  watcher = ctl;
  follow(job.id, job.last_event_seq, onEvent, ctl.signal)
    .then(async () => {
      if (ctl.signal.aborted) return;
      const done = await api(`v1/songs/${job.id}`); // the result, with fresh signed links
      if (current?.id === job.id) render(done);
      upsertLibrary(done);
      flash(`“${songTitle(done)}” ${done.status}.`);
    })
    .catch((err) => { if (!ctl.signal.aborted) report(err); });
}

function details(result) {
  const c = result.controls || {};
  const rows = [
    ["Seed", result.seed], ["Length", `${result.duration_s.toFixed(2)} s`], ["Format", result.audio_format],
    ["Diffusion steps", result.infer_step], ["Guidance", result.guidance_scale],
    ["Tags", (result.tags || []).join(", ")], ["Categories", (result.categories || []).join(", ")],
    ["Tempo", c.bpm ? `${c.bpm} bpm` : undefined], ["Key", c.keyscale],
    ["Time signature", c.timesignature ? `${c.timesignature} beats per bar` : undefined],
    ["Vocal language", c.vocal_language], ["Notes", (result.notes || []).join(" ")],
  ];
  const dl = $("song-details");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", {}, k), el("dd", {}, String(v)));
  }
}

function fileName(result, take) {
  const base = (result.title || "song").replace(/[^\w\- ]+/g, "").trim().replace(/\s+/g, "-") || "song";
  return `${base}${take.take ? `-take-${take.take + 1}` : ""}.${result.audio_format}`;
}

function renderTakes(result) {
  const box = $("takes");
  box.replaceChildren();
  for (const t of result.takes) {
    const label = `Take ${t.take + 1} of ${result.title}`;
    const audio = el("audio", { controls: true, preload: "metadata", src: t.audio_url, dataset: { take: t.take } });
    audio.setAttribute("aria-label", label);
    box.append(el("figure", { className: "take" },
      el("figcaption", {}, `Take ${t.take + 1} · seed ${t.seed} · ${t.duration_s.toFixed(1)} s`),
      audio,
      el("a", { href: t.audio_url, download: fileName(result, t) }, `Download take ${t.take + 1}`)));
  }
  const takeSelect = $("e-take");
  takeSelect.replaceChildren(...result.takes.map((t) => el("option", { value: String(t.take) },
    `Take ${t.take + 1} (${t.duration_s.toFixed(1)} s)`)));
}

async function renderEdits(jobId) {
  const page = await api(`v1/songs/${jobId}/edits?limit=20`);
  if (current?.id !== jobId) return;
  const list = $("edits-list");
  list.replaceChildren(...page.items.map(libraryItem));
  $("edits-empty").hidden = page.items.length > 0;
}

function resetEditForm(result) {
  const d = result.takes[0]?.duration_s || result.duration_s;
  for (const id of ["e-start", "e-end"]) $(id).max = d.toFixed(2);
  $("e-start").value = "0";
  $("e-end").value = Math.min(d, 5).toFixed(1);
  wave.url = null;
  wave.peaks = null;
  $("e-wave-note").textContent = "";
  if ($("edit-panel").open) loadWaveform();
}

function render(job) {
  const isNew = current?.id !== job.id;
  current = job;
  $("song-empty").hidden = true;
  $("song").hidden = false;
  $("song").dataset.id = job.id;
  $("song-title").textContent = songTitle(job);
  $("song-meta").textContent = `${MODE_LABELS[job.mode] || job.mode} · created ${fmtTime(job.created_at)} · id ${job.id}`;
  if (isNew) for (const li of $("song-stages").children) { delete li.dataset.step; delete li.dataset.total; }
  setStatus(job);
  const err = $("song-error");
  err.textContent = job.error ? `Error: ${job.error}` : "";
  err.hidden = !job.error;
  $("song-parent").hidden = !job.parent_id;
  const result = job.status === "succeeded" ? job.result : null;
  $("song-result").hidden = !result;
  const cover = $("song-cover");
  cover.hidden = !result;
  if (result) {
    cover.src = result.cover_image_url;
    cover.alt = `Cover of ${result.title}`;
    $("cover-download").href = result.cover_image_url;
    $("cover-download").download = `${fileName(result, { take: 0 }).replace(/\.\w+$/, "")}-cover.png`;
    $("manifest-download").hidden = !result.manifest_url;
    if (result.manifest_url) {
      $("manifest-download").href = result.manifest_url;
      $("manifest-download").download = `${fileName(result, { take: 0 }).replace(/\.\w+$/, "")}-manifest.json`;
    }
    renderTakes(result);
    details(result);
    $("song-lyrics").textContent = result.instrumental ? "(instrumental)" : result.lyrics || "(no lyrics)";
    if (editFormFor !== job.id) resetEditForm(result);
    editFormFor = job.id;
    renderEdits(job.id).catch(report);
  } else {
    cover.removeAttribute("src");
    $("takes").replaceChildren();
  }
  markCurrentInLibrary();
}

async function openSong(idOrJob) {
  notice("");
  stopWatching();
  const job = typeof idOrJob === "string" ? await api(`v1/songs/${idOrJob}`) : idOrJob;
  render(job);
  if (!TERMINAL.has(job.status)) watch(job);
  return job;
}

// ------------------------------------------------------------------ create, edit, cancel, delete

function syncModes() {
  const mode = document.querySelector('input[name="mode"]:checked').value;
  for (const box of document.querySelectorAll("#create-form [data-modes]")) {
    const on = box.dataset.modes.split(" ").includes(mode);
    box.hidden = !on;
    for (const input of box.querySelectorAll("input, textarea, select")) input.disabled = !on;
  }
}

function syncTasks() {
  const task = $("e-task").value;
  for (const box of document.querySelectorAll("#edit-form [data-tasks]")) {
    const on = box.dataset.tasks.split(" ").includes(task);
    box.hidden = !on;
    for (const input of box.querySelectorAll("input, textarea, select")) input.disabled = !on;
  }
  if (task === "repaint" && $("edit-panel").open) loadWaveform();
  const why = capabilities?.unavailable?.[task];
  $("e-task-note").textContent = why ? `Not on this server: ${task} ${why}.` : "";
}

function syncUploadTasks() {
  const task = $("u-task").value;
  for (const box of document.querySelectorAll("#upload-form [data-utasks]")) {
    const on = box.dataset.utasks === task;
    box.hidden = !on;
    for (const input of box.querySelectorAll("input, textarea, select")) input.disabled = !on;
  }
  const why = capabilities?.unavailable?.[task];
  $("u-note").textContent = why ? `Not on this server: ${task} ${why}.` : "";
}

// What the server's models can do (GET /v1/capabilities): tasks it cannot run stay listed, disabled,
// with the server's reason, so nobody waits for a 422 to learn it.
async function loadCapabilities() {
  capabilities = await api("v1/capabilities");
  for (const select of [$("e-task"), $("u-task")]) {
    for (const option of select.options) {
      const why = capabilities.unavailable[option.value];
      option.disabled = Boolean(why);
      option.title = why ? `${option.value} ${why}` : "";
    }
    if (select.selectedOptions[0]?.disabled) select.value = [...select.options].find((o) => !o.disabled).value;
  }
  syncTasks();
  syncUploadTasks();
}

function createBody() {
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const body = {
    audio_duration: num("f-duration"), audio_format: $("f-format").value, variations: num("f-variations"),
    seed: num("f-seed"), infer_step: num("f-steps"), guidance_scale: num("f-guidance"), bpm: num("f-bpm"),
    keyscale: text("f-key"), timesignature: text("f-timesig"), vocal_language: text("f-language"),
    instrumental: $("f-instrumental").checked, webhook_url: text("f-webhook"),
  };
  if (mode === "description") body.full_described_song = $("f-description").value;
  else {
    body.prompt = $("f-tags").value;
    if (mode === "lyrics") body.lyrics = $("f-lyrics").value;
    else body.described_lyrics = $("f-described").value;
  }
  return compact(body);
}

async function submitting(button, work) {
  button.disabled = true;
  try { await work(); } catch (err) { report(err); } finally { button.disabled = false; }
}

async function createSong(event) {
  event.preventDefault();
  notice("");
  await submitting($("create-submit"), async () => {
    const job = await api("v1/songs", { method: "POST", body: createBody(), headers: { "Idempotency-Key": randomKey() } });
    upsertLibrary(job, { prepend: true });
    flash(`Song queued: ${songTitle(job)}.`);
    await openSong(job);
    $("song-title").focus?.();
  });
}

async function startEdit(event) {
  event.preventDefault();
  if (!current) return;
  notice("");
  const task = $("e-task").value;
  const body = compact({
    task, source: { song_id: current.id, take: Number($("e-take").value || 0) },
    prompt: text("e-tags"), lyrics: text("e-lyrics"), seed: num("e-seed"), infer_step: num("e-steps"),
    variations: num("e-variations"), audio_format: $("e-format").value,
    repaint_start_s: task === "repaint" ? num("e-start") : undefined,
    repaint_end_s: task === "repaint" ? num("e-end") : undefined,
    extend_s: task === "extend" ? num("e-extend") : undefined,
    cover_strength: task === "cover" ? num("e-strength") : undefined,
    track_name: task === "extract" || task === "lego" ? $("e-track").value : undefined,
    complete_tracks: task === "complete" ? [...$("e-tracks").selectedOptions].map((o) => o.value) : undefined,
  });
  await submitting($("edit-submit"), async () => {
    const job = await api("v1/edits", { method: "POST", body, headers: { "Idempotency-Key": randomKey() } });
    upsertLibrary(job, { prepend: true });
    flash(`Edit queued: ${task} of ${songTitle(current)}.`);
    await openSong(job);
  });
}

async function uploadAudio(file) {
  // The file's own bytes as the body (POST /v1/uploads), its name in the query.
  const type = file.type && file.type.startsWith("audio/") ? file.type : "application/octet-stream";
  const r = await fetch(`v1/uploads?filename=${encodeURIComponent(file.name.slice(0, 200))}`, {
    method: "POST", body: file, cache: "no-store",
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json", "Content-Type": type },
  });
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data?.message ?? `${r.status} ${r.statusText}`);
  return data;
}

async function startFromUpload(event) {
  event.preventDefault();
  notice("");
  const file = $("u-file").files[0];
  if (!file) return;
  const task = $("u-task").value;
  await submitting($("upload-submit"), async () => {
    $("u-note").textContent = `Uploading ${file.name}…`;
    const up = await uploadAudio(file);
    $("u-note").textContent = `Uploaded ${file.name}: ${up.duration_s.toFixed(1)} s.`;
    const body = compact({
      task, source: { upload_id: up.upload_id }, prompt: $("u-tags").value, infer_step: num("u-steps"),
      cover_strength: task === "cover" ? num("u-strength") : undefined,
      extend_s: task === "extend" ? num("u-extend") : undefined,
      track_name: task === "extract" ? $("u-track").value : undefined,
    });
    const job = await api("v1/edits", { method: "POST", body, headers: { "Idempotency-Key": randomKey() } });
    upsertLibrary(job, { prepend: true });
    flash(`Edit queued: ${task} of ${file.name}.`);
    await openSong(job);
  });
}

async function cancelSong() {
  if (!current) return;
  await submitting($("song-cancel"), async () => {
    const job = await api(`v1/songs/${current.id}/cancel`, { method: "POST" });
    if (current?.id === job.id) { current = { ...current, ...job }; setStatus(current); }
    upsertLibrary(job);
  });
}

async function deleteSong() {
  if (!current) return;
  const job = current;
  if (!window.confirm(`Delete “${songTitle(job)}”? Its audio and cover are removed.`)) return;
  await submitting($("song-delete"), async () => {
    await api(`v1/songs/${job.id}`, { method: "DELETE" });
    stopWatching();
    current = null;
    $("library-list").querySelector(`li[data-id="${job.id}"]`)?.remove();
    $("library-empty").hidden = $("library-list").children.length > 0;
    $("song").hidden = true;
    $("song-empty").hidden = false;
    flash(`Deleted “${songTitle(job)}”.`);
  });
}

// ------------------------------------------------------------------ waveform (repaint range)

function selectedTake() {
  const takes = current?.result?.takes || [];
  return takes.find((t) => String(t.take) === $("e-take").value) || takes[0];
}

async function loadWaveform() {
  const take = selectedTake();
  const note = $("e-wave-note");
  if (!take) return;
  if (wave.url === take.audio_url) { drawWave(); return; }
  wave.url = take.audio_url;
  wave.peaks = null;
  wave.duration = take.duration_s;
  drawWave();
  if (take.duration_s > WAVE_MAX_S) {
    note.textContent = `No waveform for takes over ${WAVE_MAX_S / 60} minutes; use the inputs.`;
    return;
  }
  note.textContent = "Loading the waveform…";
  try {
    const bytes = await (await fetch(take.audio_url, { cache: "force-cache" })).arrayBuffer();
    // Decoded at 8 kHz: plenty for a few hundred columns, and a fraction of the memory.
    const buffer = await new OfflineAudioContext(1, 1, 8000).decodeAudioData(bytes);
    if (wave.url !== take.audio_url) return;
    wave.duration = buffer.duration;
    const columns = 600;
    const per = Math.max(1, Math.floor(buffer.length / columns));
    const chans = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
    wave.peaks = new Float32Array(columns);
    for (let i = 0; i < columns; i++) {
      let peak = 0;
      for (const ch of chans) {
        for (let j = i * per, end = Math.min(ch.length, (i + 1) * per); j < end; j++) {
          const a = Math.abs(ch[j]);
          if (a > peak) peak = a;
        }
      }
      wave.peaks[i] = peak;
    }
    note.textContent = "Drag across the waveform to choose the range, or type it above.";
    drawWave();
  } catch {
    if (wave.url === take.audio_url) note.textContent = "The waveform could not be drawn; use the inputs.";
  }
}

function drawWave() {
  const canvas = $("e-wave");
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const g = canvas.getContext("2d");
  const css = getComputedStyle(canvas);
  g.fillStyle = css.getPropertyValue("--wave-bg") || "#f2f2f2";
  g.fillRect(0, 0, w, h);
  const d = wave.duration || Number($("e-start").max) || 1;
  const a = Math.max(0, Math.min(num("e-start") ?? 0, d));
  const b = Math.max(0, Math.min(num("e-end") ?? 0, d));
  if (b > a) {
    g.fillStyle = css.getPropertyValue("--wave-sel") || "rgba(0,90,200,.25)";
    g.fillRect((a / d) * w, 0, ((b - a) / d) * w, h);
  }
  if (!wave.peaks) return;
  g.fillStyle = css.getPropertyValue("--wave-fg") || "#333";
  const n = wave.peaks.length;
  for (let i = 0; i < n; i++) {
    const amp = Math.max(1, wave.peaks[i] * (h / 2 - 2));
    g.fillRect((i / n) * w, h / 2 - amp, Math.max(1, w / n - 0.5), amp * 2);
  }
}

function waveTime(event) {
  const rect = $("e-wave").getBoundingClientRect();
  const d = wave.duration || Number($("e-start").max) || 0;
  const x = Math.max(0, Math.min(event.clientX - rect.left, rect.width));
  return Math.round((x / rect.width) * d * 10) / 10;
}

function setRange(t0, t1) {
  const lo = Math.min(t0, t1);
  const hi = Math.max(t0, t1);
  if (hi - lo < 0.1) return;
  $("e-start").value = lo.toFixed(1);
  $("e-end").value = hi.toFixed(1);
  drawWave();
}

function bindWave() {
  const canvas = $("e-wave");
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    wave.drag = waveTime(e);
  });
  canvas.addEventListener("pointermove", (e) => { if (wave.drag !== null) setRange(wave.drag, waveTime(e)); });
  const end = (e) => { if (wave.drag !== null) setRange(wave.drag, waveTime(e)); wave.drag = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", () => { wave.drag = null; });
  $("e-start").addEventListener("input", drawWave);
  $("e-end").addEventListener("input", drawWave);
  $("e-take").addEventListener("change", () => { if ($("e-task").value === "repaint") loadWaveform(); });
  $("edit-panel").addEventListener("toggle", () => {
    if ($("edit-panel").open && $("e-task").value === "repaint") loadWaveform();
  });
  window.addEventListener("resize", () => { if ($("edit-panel").open) drawWave(); });
}

// ------------------------------------------------------------------ start

function languageNames() {
  try {
    const names = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });
    for (const o of $("f-language").options) {
      if (o.value && o.value !== "unknown") o.textContent = `${names.of(o.value)} (${o.value})`;
    }
  } catch { /* codes stay as they are */ }
}

// Selects marked data-options-from="<id>" list the same options as that one (one copy in the HTML).
function copyOptions() {
  for (const select of document.querySelectorAll("select[data-options-from]")) {
    select.replaceChildren(...[...$(select.dataset.optionsFrom).options].map((o) => o.cloneNode(true)));
  }
}

function start() {
  languageNames();
  copyOptions();
  $("token-form").addEventListener("submit", (e) => { e.preventDefault(); useToken($("token").value).catch(report); });
  $("token-forget").addEventListener("click", forgetToken);
  for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener("change", syncModes);
  $("e-task").addEventListener("change", syncTasks);
  $("u-task").addEventListener("change", syncUploadTasks);
  $("upload-form").addEventListener("submit", startFromUpload);
  $("create-form").addEventListener("submit", createSong);
  $("edit-form").addEventListener("submit", startEdit);
  $("song-cancel").addEventListener("click", () => cancelSong().catch(report));
  $("song-delete").addEventListener("click", () => deleteSong().catch(report));
  $("song-parent").addEventListener("click", () => { if (current?.parent_id) openSong(current.parent_id).catch(report); });
  $("library-refresh").addEventListener("click", () => loadLibrary().catch(report));
  $("library-status").addEventListener("change", () => loadLibrary().catch(report));
  $("library-more").addEventListener("click", () => loadLibrary({ more: true }).catch(report));
  $("song-title").tabIndex = -1;
  bindWave();
  syncModes();
  syncTasks();
  syncUploadTasks();
  showToken();
  document.body.dataset.ready = "true";
  if (token) Promise.all([loadLibrary(), loadCapabilities()]).catch(report);
}

start();
