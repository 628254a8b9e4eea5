// Writ's own script for the web interface (loaded from this origin; no inline code).
//  1. Times: every <time datetime="…Z"> is shown in the viewer's zone, with UTC on hover.
//  2. Inclusion proofs: a "verify" button fetches an event's record, its RFC 9162 audit path,
//     the signed checkpoint and the server's checkpoint keys, and checks them here, in the
//     browser: the leaf hash from the record's bytes, the root from the path, the root and size
//     against the checkpoint's signed note, and the note's Ed25519 signature (C2SP signed note)
//     with WebCrypto.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) continue;
    el.title = at.toISOString().replace(".000Z", "Z") + " (UTC)";
    el.textContent = at.toLocaleString();
  }
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text) => new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

async function sha256(...parts) {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(length);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

// RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
async function rootFromProof(leaf, index, size, proof) {
  if (index >= size) throw new Error("index beyond the tree");
  let fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Error("proof too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(new Uint8Array([1]), p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await sha256(new Uint8Array([1]), r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("proof too short");
  return r;
}

// A C2SP signed note: its text, and its signature lines.
function parseNote(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note");
  const body = note.slice(0, split + 1);
  const lines = body.split("\n");
  const signatures = note.slice(split + 2).split("\n").filter((l) => l.startsWith("\u2014 "));
  return { body, origin: lines[0], size: BigInt(lines[1]), root: unb64(lines[2]), signatures };
}

async function checkSignature(note, keys) {
  for (const key of keys) {
    // name+hexid+base64: the base64 may itself hold "+", so split at the first two only.
    const first = key.indexOf("+"), second = key.indexOf("+", first + 1);
    if (first < 0 || second < 0) continue;
    const name = key.slice(0, first), id = key.slice(first + 1, second), b64 = key.slice(second + 1);
    const raw = unb64(b64);
    if (raw[0] !== 1 || raw.length !== 33) continue;
    for (const line of note.signatures) {
      const [, signer, sig] = line.split(" ");
      const bytes = unb64(sig);
      if (signer !== name || hex(bytes.slice(0, 4)) !== id) continue;
      const publicKey = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, bytes.slice(4), new TextEncoder().encode(note.body));
      if (ok) return name + "+" + id;
    }
  }
  throw new Error("no signature on the checkpoint verifies with the server's checkpoint keys");
}

async function verifyProof(button) {
  const out = button.parentElement.querySelector("output");
  out.className = "";
  out.textContent = "checking…";
  try {
    const answer = await fetch(button.dataset.proof, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const p = await answer.json();
    if (!answer.ok) throw new Error(p.error ? p.error.message : "the server refused");
    const leaf = await sha256(new Uint8Array([0]), unb64(p.record));
    if (hex(leaf) !== p.leaf_hash) throw new Error("the record's hash is not the leaf the server named");
    const root = await rootFromProof(leaf, p.index, p.tree_size, p.proof.map(unhex));
    const note = parseNote(p.checkpoint);
    if (note.size !== BigInt(p.tree_size)) throw new Error("the checkpoint is for another tree size");
    if (hex(root) !== hex(note.root)) throw new Error("the audit path does not lead to the checkpoint's root");
    const signer = await checkSignature(note, p.keys);
    out.className = "ok";
    out.textContent = "\u2713 verified in this browser: event " + p.index + " is in the tree of " + p.tree_size +
      " signed by " + signer;
  } catch (e) {
    out.className = "bad";
    out.textContent = "\u2717 not verified: " + e.message;
  }
}

function enable(root) {
  localTimes(root);
  for (const button of root.querySelectorAll("button.verify[data-proof]")) {
    if (button.dataset.bound) continue;
    button.dataset.bound = "1";
    button.addEventListener("click", () => verifyProof(button));
  }
  // A window's zone defaults to the browser's own (the person may change it).
  for (const input of root.querySelectorAll("input[data-local-zone]")) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && input.value === "UTC") input.value = zone;
  }
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    if (form.dataset.bound) continue;
    form.dataset.bound = "1";
    form.addEventListener("submit", (e) => { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
  }
}

document.addEventListener("DOMContentLoaded", () => enable(document));
document.addEventListener("htmx:afterSwap", (e) => enable(e.target));
