// The upload page: register each chosen file with the intake, send it straight to the store (one
// signed PUT, or signed parts each with its MD5, computed in a worker), follow the pipeline's
// stages, and list the owner's recent uploads. No build step, no framework. Nothing the server
// sends is ever parsed as markup: every text goes in through textContent or an attribute.
"use strict";

const PARALLEL_PARTS = 3;      // parts in flight per file
const PART_ATTEMPTS = 4;       // a part is tried this many times (backoff 0.5, 1, 2 s) before the upload is given up
const POLL_MS = 700;
const LIST_LIMIT = 20;
const FINAL_STATES = ["done", "failed", "expired", "revoked", "deleted"];

const $ = (id) => document.getElementById(id);
const keyInput = $("key"), fileInput = $("file"), send = $("send"), drop = $("drop");
keyInput.value = sessionStorage.getItem("genobase-key") || "";
let chosen = [];
let listCursor = null;

// ---- small helpers -------------------------------------------------------------------------

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// A file name is shown in its own <bdi>: a name with a right-to-left override (U+202E) or other
// bidi controls cannot reorder the text around it ("report\u202Eaf.exe" stays in its box).
function named(name, text) {
  return [element("bdi", name), text];
}
function announce(text, name) {
  $("status").replaceChildren(...(name === undefined ? [text] : named(name, text)));
}
function alertError(text, name) {
  $("alert").replaceChildren(...(name === undefined ? [text] : named(name, text)));
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const megabytes = (n) => (n / 1e6).toFixed(1);
const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
function size(bytes) {
  if (bytes < 1e3) return plural(bytes, "byte");
  return bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${megabytes(bytes)} MB`;
}

class ApiError extends Error {
  constructor(status, problem) {
    // every error is an RFC 9457 problem: a code, a message safe to show, and an error id
    const detail = typeof problem.detail === "string"
      ? `${problem.detail} (${problem.code}, error id ${problem.error_id})` : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.code = problem.code;
  }
}

class Stopped extends Error {}  // a transfer cancelled, or stopped by another part's failure
// The file may be in the store already (a completion whose answer was lost, a resumed upload the
// store has completed but whose event the intake has not had yet): such an upload is never ended
// by the page; it stays remembered, so choosing the file again resumes or follows it.
class Unconfirmed extends Error {}
// A PUT the store refused (status) or whose answer never came (status 0: it may have been stored).
class StoreError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

// An upload's id is a UUID; anything else (a forged or stale remembered entry) never reaches a path.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isUuid = (id) => typeof id === "string" && UUID.test(id);
// The intake's own routes: the key is only ever sent to the page's own origin, never to a URL
// that came with a ticket.
function uploadPath(id, tail = "") {
  if (!isUuid(id)) throw new Error("the upload's id is not valid");
  return `/uploads/${encodeURIComponent(id)}${tail}`;
}

// A link from the server is shown only if it is http: or https: (never javascript:, data:, …).
function safeHref(url) {
  if (typeof url !== "string") return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

// A request to the intake (the page's own origin, with the key): its status and its JSON.
async function call(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders, "Authorization": `Bearer ${keyInput.value.trim()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data };
}
const api = async (method, path, body, extraHeaders) => (await call(method, path, body, extraHeaders)).data;

// Registers a file with an Idempotency-Key: the same key and the same body sent again answer the
// same upload (200, "replayed") with its links signed afresh; a new upload is 201.
async function register(body, idempotencyKey) {
  const answer = await call("POST", "/uploads", body, { "Idempotency-Key": idempotencyKey });
  return { ticket: answer.data, created: answer.status === 201 };
}

// A random UUID (v4). crypto.randomUUID needs a secure context (https, or localhost); a page served
// over plain http elsewhere builds the same from crypto.getRandomValues.
function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---- choosing files ------------------------------------------------------------------------

function choose(files) {
  chosen = Array.from(files || []);
  send.disabled = chosen.length === 0;
  if (chosen.length === 0) { $("chosen").textContent = "No file chosen."; return; }
  const names = chosen.flatMap((f, i) => (i ? [", ", element("bdi", f.name)] : [element("bdi", f.name)]));
  $("chosen").replaceChildren(`${plural(chosen.length, "file")} chosen: `, ...names);
}
fileInput.addEventListener("change", () => choose(fileInput.files));
drop.addEventListener("click", () => fileInput.click());
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
});
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });

// The options of `genobase upload`: format, alphabet, circular, labels, validate only.
function registration(file) {
  const request = { filename: file.name, size: file.size, mode: $("validate").checked ? "validate" : "store" };
  if ($("format").value) request.format = $("format").value;
  if ($("alphabet").value) request.alphabet = $("alphabet").value;
  if ($("circular").checked) request.circular = true;
  const labels = parseLabels($("labels").value);
  if (Object.keys(labels).length) request.labels = labels;
  return request;
}

function parseLabels(text) {
  const labels = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line) return;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`Labels, line ${index + 1}: write key=value (one label a line).`);
    labels[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  });
  return labels;
}

// ---- remembering multipart uploads (to resume) ---------------------------------------------
// Per file (name, size, last modified), in localStorage: the Idempotency-Key the file was
// registered with, the registration's body, and the upload's id. Nothing the page sends a request
// to comes from there: no URL is kept (a forged or stale entry's completion URL would receive the
// parts' ETags and answer a fake completion), and never the API key, which stays in sessionStorage.
// A resume registers the same body again with the same key, and the intake answers the same upload
// with links signed afresh.

// What is read back is checked, not trusted: an entry that does not parse, or that is not exactly
// {idempotencyKey, body, uploadId} with a UUID key and id and a body that registers this file (its
// name and size, only the members the page sends), is dropped.
const rememberedName = (file) => `genobase-transfer:${file.name}:${file.size}:${file.lastModified}`;
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isText = (v) => typeof v === "string";
const ENTRY_MEMBERS = ["body", "idempotencyKey", "uploadId"];
const BODY_MEMBERS = new Set(["filename", "size", "mode", "format", "alphabet", "circular", "labels"]);
function validBody(body, file) {
  if (!isObject(body) || !Object.keys(body).every((member) => BODY_MEMBERS.has(member))) return false;
  if (body.filename !== file.name || body.size !== file.size) return false;
  if (body.mode !== "store" && body.mode !== "validate") return false;
  if ("format" in body && !isText(body.format)) return false;
  if ("alphabet" in body && !isText(body.alphabet)) return false;
  if ("circular" in body && body.circular !== true) return false;
  return !("labels" in body) || (isObject(body.labels) && Object.values(body.labels).every(isText));
}
function validEntry(entry, file) {
  if (!isObject(entry) || Object.keys(entry).sort().join() !== ENTRY_MEMBERS.join()) return false;
  return isUuid(entry.idempotencyKey) && isUuid(entry.uploadId) && validBody(entry.body, file);
}
function remembered(file) {
  let entry = null;
  try { entry = JSON.parse(localStorage.getItem(rememberedName(file)) || "null"); } catch { entry = undefined; }
  if (entry === null) return null;
  if (validEntry(entry, file)) return entry;
  localStorage.removeItem(rememberedName(file));
  return null;
}
const remember = (file, { idempotencyKey, body, uploadId }) =>
  localStorage.setItem(rememberedName(file), JSON.stringify({ idempotencyKey, body, uploadId }));
const forget = (file) => localStorage.removeItem(rememberedName(file));

// A multipart ticket whose plan is this file's, with time left to send it: a replay past the
// ticket's end is signed for a second at most, and an upload about to expire is not worth resuming.
const RESUME_MARGIN_MS = 60_000;
function resumable(ticket, file) {
  const plan = ticket.multipart;
  if (ticket.upload_method !== "multipart" || !isObject(plan)) return false;
  if (!Number.isSafeInteger(plan.part_size) || plan.part_size <= 0) return false;
  if (plan.part_count !== Math.ceil(file.size / plan.part_size)) return false;
  return Date.parse(ticket.expires_at) - Date.now() > RESUME_MARGIN_MS;
}

// The intake's refusals that end a remembered entry: the key used with another body (409), or the
// body refused (another 4xx). An unreachable intake, a 5xx, a rejected API key or a rate limit says
// nothing about the entry: it is kept, and choosing the file again tries again.
const keepsEntry = (err) => !(err instanceof ApiError) || err.status >= 500 || [401, 403, 429].includes(err.status);

// Registers the remembered body again with the remembered key. The answer is the same upload with
// fresh links: still waiting for its parts, { ticket } to continue it; already in the store (no
// links, and a state that is not final), { ticket, alreadySent } to follow it. Anything else (another
// upload, an ended one, one past its time) drops the entry: null, and the file is registered anew.
async function resume(file, saved) {
  let answer;
  try {
    answer = await register(saved.body, saved.idempotencyKey);
  } catch (err) {
    if (keepsEntry(err)) throw err;
    forget(file);
    return null;
  }
  const { ticket, created } = answer;
  if (!isObject(ticket) || ticket.id !== saved.uploadId) {
    forget(file);
    // registered by this very request (the key was unknown): ended, not left waiting for its file
    if (created && isObject(ticket) && isUuid(ticket.id)) await api("DELETE", uploadPath(ticket.id)).catch(() => {});
    return null;
  }
  if (resumable(ticket, file)) return { ticket, alreadySent: false };
  if (ticket.upload_method === "multipart") { forget(file); return null; }
  // no links: the upload waits for its object no more (in the store, or ended)
  const status = await api("GET", uploadPath(ticket.id));
  forget(file);
  if (status.state === "awaiting_upload" || FINAL_STATES.includes(status.state)) return null;
  return { ticket, alreadySent: true };
}

// ---- MD5 in a worker -----------------------------------------------------------------------

let hasher = null;
const hashing = new Map();
let hashId = 0;
function md5(blob) {
  if (!hasher) {
    const worker = new Worker("/static/md5-worker.js");
    hasher = worker;
    worker.onmessage = ({ data }) => {
      const waiting = hashing.get(data.id);
      if (!waiting) return;
      hashing.delete(data.id);
      if (data.error) waiting.reject(new Error(`MD5: ${data.error}`)); else waiting.resolve(data);
    };
    // A worker that cannot load (its script or spark-md5 missing) or that throws outside a hash
    // would leave every part waiting for ever: each pending hash fails instead, which stops the
    // transfer as a failed part does, and the next hash starts a new worker.
    const failed = (event) => {
      if (event && event.preventDefault) event.preventDefault();
      const why = event && event.message ? event.message : "it could not be loaded";
      const error = new Error(`the MD5 worker failed (${why}); reload the page and try again`);
      for (const waiting of hashing.values()) waiting.reject(error);
      hashing.clear();
      worker.terminate();
      if (hasher === worker) hasher = null;
    };
    worker.onerror = failed;
    worker.onmessageerror = failed;
  }
  return new Promise((resolve, reject) => {
    const id = hashId++;
    hashing.set(id, { resolve, reject });
    hasher.postMessage({ id, blob });
  });
}

// ---- one file's transfer -------------------------------------------------------------------

function transferItem(file) {
  const item = element("li", undefined, "transfer");
  item.dataset.file = file.name;
  const sent = element("progress");
  sent.max = 1; sent.value = 0; sent.className = "sent";
  sent.setAttribute("aria-label", `${file.name}: sent`);
  const processed = element("progress");
  processed.max = 1; processed.value = 0; processed.className = "processed";
  processed.setAttribute("aria-label", `${file.name}: processed`);
  const cancel = element("button", "Cancel", "cancel");
  cancel.type = "button";
  cancel.setAttribute("aria-label", `Cancel ${file.name}`);
  const retry = element("button", "Retry", "retry");
  retry.type = "button"; retry.hidden = true;
  retry.setAttribute("aria-label", `Retry ${file.name}`);
  const parts = {
    item, sent, processed, cancel, retry,
    sending: element("p", "Registering…", "stage sending"),
    stage: element("p", "", "stage pipeline"),
    outcome: element("p", "", "outcome"),
  };
  const actions = element("div", undefined, "actions");
  actions.append(cancel, retry);
  const name = element("p", undefined, "name");
  name.append(element("bdi", file.name));
  item.append(name, parts.sending, sent, parts.stage, processed, parts.outcome, actions);
  $("transfers").prepend(item);
  $("transfers-section").hidden = false;
  return parts;
}

function showSent(ui, done, total, started) {
  ui.sent.value = total ? done / total : 1;
  const rate = done / Math.max((Date.now() - started) / 1000, 0.001);
  const left = rate > 0 ? Math.round((total - done) / rate) : 0;
  ui.sending.textContent = `Sending ${size(done)} of ${size(total)}, ${megabytes(rate)} MB/s, ${left} s left`;
}

function stopIfStopped(transfer) {
  if (transfer.stopped) throw new Stopped(transfer.stopped);
}

function put(transfer, url, blob, headers, onProgress) {  // XMLHttpRequest: fetch has no upload progress
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    transfer.requests.add(xhr);
    const settle = (then, value) => { transfer.requests.delete(xhr); then(value); };
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => (xhr.status < 300 ? settle(resolve, xhr)
      : settle(reject, new StoreError(`the store answered ${xhr.status}: ${xhr.responseText.slice(0, 200)}`, xhr.status)));
    xhr.onerror = () => settle(reject, new StoreError("the store could not be reached", 0));
    xhr.onabort = () => settle(reject, new Stopped("stopped"));
    xhr.send(blob);
  });
}

// A part is signed and sent, and tried again with backoff when that fails; after PART_ATTEMPTS
// the error stops the whole transfer. An API refusal (4xx) is not tried again.
async function sendPart(transfer, plan, number, blob, digest, onProgress) {
  const partsPath = uploadPath(transfer.ticket.id, "/parts");
  for (let attempt = 1; ; attempt++) {
    stopIfStopped(transfer);
    try {
      const signed = await api("POST", partsPath, { parts: [{ number, md5: digest.base64 }] });
      await put(transfer, signed.parts[0].url, blob, { "Content-MD5": digest.base64 }, onProgress);
      return;
    } catch (err) {
      stopIfStopped(transfer);
      // The upload no longer takes parts: another transfer of the same file (a second tab, the
      // file chosen again) completed it, or its multipart upload is gone. Never ended from here.
      if ((err instanceof ApiError && err.code === "not_awaiting_parts") || (err instanceof StoreError && err.status === 404)) {
        throw new Unconfirmed(`part ${number} of ${plan.part_count}: the upload no longer takes parts (${err.message}); it may be complete already`);
      }
      const refused = err instanceof ApiError && err.status < 500 && err.status !== 429;
      if (refused || attempt >= PART_ATTEMPTS) {
        throw new Error(`part ${number} of ${plan.part_count} failed after ${attempt} attempt${attempt > 1 ? "s" : ""}: ${err.message}`);
      }
      onProgress(0);
      await sleep(500 * 2 ** (attempt - 1));
    }
  }
}

async function sendParts(transfer, started) {
  const { file, ui } = transfer;
  const plan = transfer.ticket.multipart;
  // The parts the store already has (a resumed upload): each is kept if its ETag is the MD5 of
  // the same bytes of this file, else sent again.
  let listing;
  try {
    listing = await api("GET", uploadPath(transfer.ticket.id, "/parts"));
  } catch (err) {
    throw new Unconfirmed(`the stored parts could not be listed (${err.message}); the upload may be complete already`);
  }
  const stored = new Map(listing.parts.map((p) => [p.number, p]));
  if (stored.size) announce(`: ${stored.size} of ${plan.part_count} parts already stored; sending the others.`, file.name);
  const sent = new Array(plan.part_count + 1).fill(0);
  const report = () => showSent(ui, sent.reduce((a, b) => a + b, 0), file.size, started);
  let next = 1;
  async function lane() {
    while (next <= plan.part_count) {
      stopIfStopped(transfer);
      const number = next++;
      const blob = file.slice((number - 1) * plan.part_size, Math.min(number * plan.part_size, file.size));
      const digest = await md5(blob);
      const have = stored.get(number);
      if (!(have && have.size === blob.size && have.etag.replace(/"/g, "") === digest.hex)) {
        await sendPart(transfer, plan, number, blob, digest, (loaded) => { sent[number] = loaded; report(); });
      }
      sent[number] = blob.size;
      report();
    }
  }
  const lanes = Array.from({ length: PARALLEL_PARTS }, () => lane().catch((err) => {
    // the first failure stops the other lanes at once: their requests in flight are aborted
    if (!transfer.stopped) transfer.stopped = err.message;
    for (const xhr of transfer.requests) xhr.abort();
    throw err;
  }));
  const outcomes = await Promise.allSettled(lanes);
  const failed = outcomes.find((o) => o.status === "rejected" && !(o.reason instanceof Stopped))
    || outcomes.find((o) => o.status === "rejected");
  if (failed) throw failed.reason;
  await complete(transfer, plan);
}

// The CompleteMultipartUpload body. An ETag is the store's text (quotes and all): escaped, so that
// no ETag can add or change an element of the document.
const XML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
const escapeXml = (text) => String(text).replace(/[&<>"']/g, (c) => XML_ESCAPES[c]);
function completionXml(parts) {
  return "<CompleteMultipartUpload>" + parts.map((p) => {
    if (!Number.isSafeInteger(p.number)) throw new Error("a stored part has no valid number");
    return `<Part><PartNumber>${p.number}</PartNumber><ETag>${escapeXml(p.etag)}</ETag></Part>`;
  }).join("") + "</CompleteMultipartUpload>";
}

async function complete(transfer, plan) {
  for (let attempt = 1; ; attempt++) {
    stopIfStopped(transfer);
    try {
      const parts = (await api("GET", uploadPath(transfer.ticket.id, "/parts"))).parts.sort((a, b) => a.number - b.number);
      if (parts.length !== plan.part_count) throw new Error(`the store holds ${parts.length} of ${plan.part_count} parts`);
      const xml = completionXml(parts);
      const done = await fetch(plan.complete_url, { method: "POST", body: xml });
      const text = await done.text();
      if (!done.ok || text.includes("<Error>")) throw new Error(`completing the upload failed: ${text.slice(0, 200)}`);
      return;
    } catch (err) {
      if (err instanceof ApiError && err.code === "not_awaiting_parts") return;  // a completion whose answer was lost
      if (attempt >= PART_ATTEMPTS) throw new Unconfirmed(`completing the upload failed: ${err.message}`);
      await sleep(500 * 2 ** (attempt - 1));
    }
  }
}

// Ends an upload that will not be finished: DELETE /uploads/{id} ends it and has the store's
// multipart upload aborted (by the watchdog, at its next sweep), so no part stays behind.
async function abandon(transfer) {
  for (const xhr of transfer.requests) xhr.abort();
  if (!transfer.ticket) return true;
  try {
    await api("DELETE", uploadPath(transfer.ticket.id));
    forget(transfer.file);
    return true;
  } catch {
    return false;  // unreachable: the upload stays remembered, so choosing the file again resumes or ends it
  }
}

// Polls the status until a final state; a lost answer or a 5xx (an intake restarting) is "not
// yet" a few times over, a refusal (4xx) is an error at once.
async function follow(transfer) {
  const { ui } = transfer;
  for (let misses = 0; ;) {
    let status;
    try {
      status = await api("GET", uploadPath(transfer.ticket.id));
      misses = 0;
    } catch (err) {
      if ((err instanceof ApiError && err.status < 500) || ++misses > 10) throw err;
      await sleep(POLL_MS * 2);
      continue;
    }
    ui.stage.textContent = `Pipeline: ${status.state} — ${plural(status.progress.records_done, "record")}`;
    ui.processed.value = status.progress.fraction;
    if (FINAL_STATES.includes(status.state)) return status;
    await sleep(POLL_MS);
  }
}

function showOutcome(transfer, status) {
  const { ui, file } = transfer;
  const outcome = ui.outcome;
  ui.retry.hidden = true;
  if (status.state === "done" && status.mode === "validate") {
    const v = status.validation;
    outcome.className = "outcome ok";
    outcome.textContent = `Valid ${v.format}: ${plural(v.records, "record")}, ${plural(v.bytes, "byte")}; `
      + `MD5 ${v.source_md5}, SHA-256 ${v.source_sha256}, collection ${v.collection_digest}. Nothing was stored.`;
    announce(`: valid, ${plural(v.records, "record")}.`, file.name);
  } else if (status.state === "done") {
    outcome.className = "outcome ok";
    const href = safeHref(status.result.url);
    const done = `Done: ${plural(status.result.records, "record")}.`;
    if (href) {
      const link = element("a", "Download the result", "download");  // built, not parsed
      link.href = href;
      link.target = "_blank";
      link.rel = "noopener";
      outcome.replaceChildren(`${done} `, link);
    } else {
      outcome.textContent = done;  // no link rather than a link of another scheme
    }
    announce(`: done, ${plural(status.result.records, "record")}.`, file.name);
  } else if (status.state === "failed" || status.state === "revoked") {
    const e = status.error;
    const where = e.line ? ` at line ${e.line}` + (e.column ? `, column ${e.column}` : "") : "";
    outcome.className = "outcome error";
    outcome.textContent = `${status.state === "revoked" ? "Not processed" : "Failed"}: ${e.code}${where}: ${e.message}`;
    alertError(`: ${outcome.textContent}`, file.name);
    ui.retry.hidden = status.state !== "failed";
  } else {
    outcome.className = "outcome error";
    outcome.textContent = status.state === "deleted" ? "The upload was deleted." : "The upload expired before the file arrived.";
    alertError(`: ${outcome.textContent}`, file.name);
  }
}

async function runTransfer(file) {
  const ui = transferItem(file);
  const transfer = { file, ui, ticket: null, stopped: null, delivered: false, requests: new Set() };
  ui.cancel.addEventListener("click", async () => {
    ui.cancel.disabled = true;
    transfer.stopped = "cancelled";
    const ended = await abandon(transfer);
    ui.sending.textContent = "Sending stopped.";
    ui.outcome.className = "outcome";
    ui.outcome.textContent = ended ? "Cancelled: the upload was ended and nothing is kept."
      : "Cancelled here, but the intake could not be reached: choose the file again to resume or cancel it.";
    announce(": cancelled.", file.name);
  });
  ui.retry.addEventListener("click", async () => {
    ui.retry.hidden = true;
    try {
      await api("POST", uploadPath(transfer.ticket.id, "/retry"));
      ui.outcome.className = "outcome"; ui.outcome.textContent = "Processing again…";
      announce(": processing again.", file.name);
      showOutcome(transfer, await follow(transfer));
    } catch (err) {
      ui.outcome.className = "outcome error"; ui.outcome.textContent = err.message;
      alertError(`: ${err.message}`, file.name);
    }
    refreshList();
  });
  try {
    const started = Date.now();
    let alreadySent = false;
    // the same file chosen before (a reload, a lost connection): continue where it stopped
    const saved = remembered(file);
    const resumed = saved ? await resume(file, saved) : null;
    if (resumed) {
      transfer.ticket = resumed.ticket;
      alreadySent = resumed.alreadySent;
    } else {
      const body = registration(file);
      const idempotencyKey = newIdempotencyKey();
      transfer.ticket = (await register(body, idempotencyKey)).ticket;
      // a multipart upload is remembered while its parts are sent: how to register it again
      if (transfer.ticket.upload_method === "multipart") remember(file, { idempotencyKey, body, uploadId: transfer.ticket.id });
    }
    if (transfer.stopped) {  // cancelled while registering; a file already in the store is never ended
      if (!alreadySent) await abandon(transfer);
      return;
    }
    const ticket = transfer.ticket;
    ui.item.dataset.id = ticket.id;
    if (!alreadySent && ticket.upload_method === "PUT") {
      try {
        await put(transfer, ticket.upload_url, file, ticket.upload_headers || {}, (loaded) => showSent(ui, loaded, file.size, started));
      } catch (err) {
        // The answer was lost, not refused: the store may have the whole file, so it is never ended from here.
        if (err instanceof StoreError && err.status === 0) throw new Unconfirmed(`${err.message}; the file may be stored already`);
        throw err;
      }
    } else if (!alreadySent) {
      await sendParts(transfer, started);
      forget(file);
    }
    transfer.delivered = true;
    ui.sent.value = 1;
    ui.sending.textContent = `Sent ${size(file.size)} in ${((Date.now() - started) / 1000).toFixed(1)} s.`;
    ui.cancel.hidden = true;
    showOutcome(transfer, await follow(transfer));
  } catch (err) {
    if (transfer.stopped === "cancelled") return;  // the cancel button has said so
    ui.cancel.hidden = true;
    ui.outcome.className = "outcome error";
    const reason = err.message.replace(/[.\s]*$/, ".");
    if (err instanceof Unconfirmed) {
      ui.sending.textContent = "Sending stopped.";
      ui.outcome.textContent = `Not finished: ${reason} Choose the file again to resume it or follow it; its state is in the list below.`;
    } else if (transfer.delivered) {
      // the file is in the store and the pipeline has it: only following it failed; never delete it
      ui.outcome.textContent = `Could not follow the upload: ${reason} Its state is in the list below.`;
    } else {
      const ended = transfer.ticket ? await abandon(transfer) : true;
      ui.sending.textContent = "Sending stopped.";
      ui.outcome.textContent = `Failed: ${reason}` + (transfer.ticket
        ? (ended ? " The upload was ended; nothing is kept." : " The intake could not be reached: choose the file again to resume.")
        : "");
    }
    alertError(`: ${ui.outcome.textContent}`, file.name);
  } finally {
    refreshList();
  }
}

send.addEventListener("click", () => {
  alertError("");
  if (!keyInput.value.trim()) { alertError("Enter your API key first."); keyInput.focus(); return; }
  sessionStorage.setItem("genobase-key", keyInput.value.trim());
  try { parseLabels($("labels").value); } catch (err) { alertError(err.message); $("labels").focus(); return; }
  const files = chosen;
  choose([]);
  fileInput.value = "";
  announce(`Sending ${files.length} file${files.length > 1 ? "s" : ""}.`);
  for (const file of files) runTransfer(file);
});

// ---- the owner's recent uploads ------------------------------------------------------------

function listPath(cursor) {
  const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
  if ($("filter-name").value.trim()) query.set("name", $("filter-name").value.trim());
  if ($("filter-state").value) query.set("state", $("filter-state").value);
  if (cursor) query.set("cursor", cursor);
  return `/uploads?${query}`;
}

// A plain link cannot send the key, and the result route answers with a redirect whose target a
// script cannot read; the status carries the presigned result URL itself, so the link is that.
async function resultLink(upload) {
  const status = await api("GET", uploadPath(upload.id));
  const href = status.result ? safeHref(status.result.url) : null;
  if (!href) return element("span", "—");
  const link = element("a", "Download", "download");
  link.href = href;
  link.target = "_blank";
  link.rel = "noopener";
  link.setAttribute("aria-label", `Download the result of ${upload.filename}`);
  return link;
}

function uploadRow(upload) {
  const row = element("tr");
  row.dataset.id = upload.id;
  row.dataset.file = upload.filename;
  // Each label in a <bdi> of its own, like file names: one label cannot reorder the others.
  const labels = element("td", undefined, "labels");
  const pairs = Object.entries(upload.labels || {});
  pairs.forEach(([k, v], i) => labels.append(...(i ? [", "] : []), element("bdi", `${k}=${v}`)));
  if (!pairs.length) labels.textContent = "—";
  const result = element("td");
  result.className = "result";
  const actions = element("td");
  const name = element("td", undefined, "file");
  name.append(element("bdi", upload.filename));
  row.append(name, element("td", upload.state, "state"),
    element("td", upload.records === null || upload.records === undefined ? "—" : String(upload.records), "records"),
    labels, result, actions);
  if (upload.state === "done") {
    resultLink(upload).then((link) => result.replaceChildren(link), () => result.replaceChildren(element("span", "—")));
  } else {
    result.textContent = upload.state === "failed" && upload.error_code ? upload.error_code : "—";
  }
  if (upload.state === "failed") {
    const retry = element("button", "Retry", "retry");
    retry.type = "button";
    retry.setAttribute("aria-label", `Retry ${upload.filename}`);
    retry.addEventListener("click", async () => {
      try {
        await api("POST", uploadPath(upload.id, "/retry"));
        announce(": processing again.", upload.filename);
      } catch (err) { alertError(`: ${err.message}`, upload.filename); }
      refreshList();
    });
    actions.append(retry);
  }
  const remove = element("button", "Delete", "delete");
  remove.type = "button";
  remove.setAttribute("aria-label", `Delete ${upload.filename}`);
  remove.addEventListener("click", async () => {
    if (!remove.classList.contains("armed")) {  // two presses: a delete cannot be undone
      remove.classList.add("armed");
      remove.textContent = "Confirm delete";
      remove.setAttribute("aria-label", `Confirm: delete ${upload.filename}`);
      $("status").replaceChildren("Press again to delete ", element("bdi", upload.filename), "; this cannot be undone.");
      return;
    }
    remove.disabled = true;
    try {
      await api("DELETE", uploadPath(upload.id));
      announce(": deleted.", upload.filename);
    } catch (err) { alertError(`: ${err.message}`, upload.filename); }
    refreshList();
  });
  actions.append(remove);
  return row;
}

let listing = Promise.resolve();
function refreshList(more = false) {
  listing = listing.then(() => loadList(more), () => loadList(more));
  return listing;
}

async function loadList(more) {
  const empty = $("recent-empty"), table = $("recent"), rows = $("recent-rows");
  if (!keyInput.value.trim()) {
    table.hidden = true; $("more").hidden = true; empty.hidden = false;
    empty.textContent = "Enter your API key to see your uploads.";
    return;
  }
  try {
    const page = await api("GET", listPath(more ? listCursor : null));
    listCursor = page.next_cursor;
    const built = page.uploads.map(uploadRow);
    if (more) rows.append(...built); else rows.replaceChildren(...built);
    table.hidden = rows.children.length === 0;
    empty.hidden = rows.children.length !== 0;
    empty.textContent = "No uploads yet.";
    $("more").hidden = !listCursor;
  } catch (err) {
    table.hidden = true; empty.hidden = false;
    empty.textContent = `The list could not be read: ${err.message}`;
  }
}

$("refresh").addEventListener("click", () => refreshList());
$("more").addEventListener("click", () => refreshList(true));
$("filter-state").addEventListener("change", () => refreshList());
$("filter-name").addEventListener("change", () => refreshList());
keyInput.addEventListener("change", () => {
  sessionStorage.setItem("genobase-key", keyInput.value.trim());
  refreshList();
});
refreshList();
