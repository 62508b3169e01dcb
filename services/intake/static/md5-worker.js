// The upload page's MD5 worker: S3's Content-MD5 of each part, off the page's thread, so that a
// 2 GB file leaves the page responsive. A part arrives as a Blob (a reference to the file, not its
// bytes) and is read 1 MiB at a time: a part is never whole in memory. Web Crypto has no MD5.
"use strict";
importScripts("/static/vendor/spark-md5.min.js");

const CHUNK_BYTES = 1024 * 1024;

self.onmessage = async ({ data }) => {
  const { id, blob } = data;
  try {
    const md5 = new SparkMD5.ArrayBuffer();
    for (let at = 0; at < blob.size; at += CHUNK_BYTES) {
      md5.append(await blob.slice(at, at + CHUNK_BYTES).arrayBuffer());
    }
    const hex = md5.end();
    let binary = "";
    for (let i = 0; i < hex.length; i += 2) binary += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
    self.postMessage({ id, hex, base64: btoa(binary) });
  } catch (err) {
    self.postMessage({ id, error: String((err && err.message) || err) });
  }
};
