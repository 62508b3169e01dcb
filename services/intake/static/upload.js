// The upload page: register with the intake, send the file straight to the store (one signed PUT,
// or signed parts, each with its MD5), then follow the pipeline's stages. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("key"), fileInput = $("file"), send = $("send");
keyInput.value = sessionStorage.getItem("genobase-key") || "";
let chosen = null;

function choose(file) { chosen = file; send.disabled = !file; }
fileInput.addEventListener("change", () => choose(fileInput.files[0] || null));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files[0]); });

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Authorization": `Bearer ${keyInput.value.trim()}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    // every error is an RFC 9457 problem: a code, a message safe to show, and an error id
    const detail = typeof data.detail === "string" ? `${data.detail} (${data.code}, error id ${data.error_id})` : JSON.stringify(data);
    throw new Error(`HTTP ${response.status}: ${detail}`);
  }
  return data;
}

function put(url, blob, headers, onProgress) {  // XMLHttpRequest: fetch has no upload progress
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => (xhr.status < 300 ? resolve(xhr) : reject(new Error(`the store answered ${xhr.status}: ${xhr.responseText.slice(0, 200)}`)));
    xhr.onerror = () => reject(new Error("the store could not be reached"));
    xhr.send(blob);
  });
}

function showSent(done, total, started) {
  $("sent").value = total ? done / total : 1;
  const rate = done / Math.max((Date.now() - started) / 1000, 0.001);
  const left = rate > 0 ? Math.round((total - done) / rate) : 0;
  $("sending").textContent = `Sending ${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB, ${(rate / 1e6).toFixed(1)} MB/s, ${left} s left`;
}

async function sendParts(ticket, file, started) {
  const plan = ticket.multipart;
  const sent = new Array(plan.part_count + 1).fill(0);
  const report = () => showSent(sent.reduce((a, b) => a + b, 0), file.size, started);
  let next = 1;
  async function worker() {
    while (next <= plan.part_count) {
      const number = next++;
      const blob = file.slice((number - 1) * plan.part_size, number * plan.part_size);
      const md5 = btoa(String.fromCharCode(...hexBytes(SparkMD5.ArrayBuffer.hash(await blob.arrayBuffer()))));
      const signed = await api("POST", plan.parts_url, { parts: [{ number, md5 }] });
      await put(signed.parts[0].url, blob, { "Content-MD5": md5 }, (loaded) => { sent[number] = loaded; report(); });
      sent[number] = blob.size; report();
    }
  }
  await Promise.all([worker(), worker(), worker()]);
  const parts = (await api("GET", plan.parts_url)).parts.sort((a, b) => a.number - b.number);
  const xml = "<CompleteMultipartUpload>" + parts.map((p) =>
    `<Part><PartNumber>${p.number}</PartNumber><ETag>${p.etag}</ETag></Part>`).join("") + "</CompleteMultipartUpload>";
  const done = await fetch(plan.complete_url, { method: "POST", body: xml });
  const text = await done.text();
  if (!done.ok || text.includes("<Error>")) throw new Error(`completing the upload failed: ${text.slice(0, 200)}`);
}

function hexBytes(hex) { const out = []; for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16)); return out; }

async function follow(ticket) {
  for (;;) {
    const status = await api("GET", `/uploads/${ticket.id}`);
    $("state").textContent = `Pipeline: ${status.state} — ${status.progress.records_done} records`;
    $("processed").value = status.progress.fraction;
    if (["done", "failed", "expired", "revoked", "deleted"].includes(status.state)) return status;
    await new Promise((r) => setTimeout(r, 700));
  }
}

send.addEventListener("click", async () => {
  const file = chosen;
  sessionStorage.setItem("genobase-key", keyInput.value.trim());
  send.disabled = true;
  $("progress").hidden = false;
  const outcome = $("outcome");
  outcome.className = ""; outcome.textContent = "";
  try {
    const mode = $("validate").checked ? "validate" : "store";
    const ticket = await api("POST", "/uploads", { filename: file.name, size: file.size, mode });
    const started = Date.now();
    if (ticket.upload_method === "PUT") {
      await put(ticket.upload_url, file, ticket.upload_headers || {}, (loaded) => showSent(loaded, file.size, started));
    } else {
      await sendParts(ticket, file, started);
    }
    showSent(file.size, file.size, started);
    const status = await follow(ticket);
    if (status.state === "done" && status.mode === "validate") {
      const v = status.validation;  // text only: nothing from the server is markup
      outcome.className = "ok";
      outcome.textContent = `Valid ${v.format}: ${v.records} records, ${v.bytes} bytes; `
        + `MD5 ${v.source_md5}, SHA-256 ${v.source_sha256}, collection ${v.collection_digest}. Nothing was stored.`;
    } else if (status.state === "done") {
      outcome.className = "ok";
      const link = document.createElement("a");  // built, not parsed: nothing from the server is markup
      link.id = "download";
      link.href = status.result.url;
      link.textContent = "Download the result";
      outcome.replaceChildren(`Done: ${status.result.records} records. `, link);
    } else if (status.state === "failed" || status.state === "revoked") {
      const e = status.error;
      const where = e.line ? ` at line ${e.line}` + (e.column ? `, column ${e.column}` : "") : "";
      outcome.className = "error";
      outcome.textContent = `${status.state === "revoked" ? "Not processed" : "Failed"}: ${e.code}${where}: ${e.message}`;
    } else if (status.state === "deleted") {
      outcome.className = "error";
      outcome.textContent = "The upload was deleted.";
    } else {
      outcome.className = "error";
      outcome.textContent = "The upload expired before the file arrived.";
    }
  } catch (err) {
    outcome.className = "error";
    outcome.textContent = err.message;
  } finally {
    send.disabled = false;
  }
});
