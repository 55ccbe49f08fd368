// alpy-lab's dashboard: the queue, the labs and the server's events, live.
// No framework and no build step: the server sends this file as it is.
// Data from the server is put in the page as text only (textContent),
// never as markup. The server enforces every role; this page only follows
// what it is allowed (buttons a role may not use are not shown).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, me: null, lastId: null, queue: null, abort: null, console: null, paused: false, follower: 0 };

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function api(path, options) {
  const o = Object.assign({ headers: {} }, options || {});
  o.headers = Object.assign({ Authorization: "Bearer " + state.token }, o.headers);
  const r = await fetch(path, o);
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r;
}

function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${s.toFixed(0)} s` : s < 5400 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
}

function clock(t) { return new Date(t * 1000).toISOString().slice(11, 19) + "Z"; }

function button(text, action) {
  const b = el("button", text);
  b.addEventListener("click", () => action().catch(showError));
  return b;
}

// --- the queue and the labs -------------------------------------------

let refreshing = null;
function refresh() {
  // Several events in a burst: one read of the state.
  if (refreshing) return;
  refreshing = setTimeout(async () => {
    refreshing = null;
    try {
      state.queue = await (await api("/queue")).json();
      render();
      showError(null);
    } catch (e) { showError(e); }
  }, 50);
}

function render() {
  const q = state.queue;
  if (!q) return;
  const operator = state.me && state.me.role === "operator";
  const active = q.sessions.filter((s) => s.status === "active").length;
  $("counts").textContent = `${active} active, ${q.sessions.length - active} waiting`;
  const rows = q.sessions.map((s) => {
    const tr = el("tr", null, { "data-handle": s.handle, "data-status": s.status });
    tr.append(el("td", s.position || "-"), el("td", s.handle), el("td", s.owner));
    tr.append(el("td", s.status, { class: "status-" + s.status }));
    tr.append(el("td", clock(s.created)), el("td", ago(s.last_heartbeat), { class: "age", "data-t": s.last_heartbeat }));
    tr.append(el("td", s.lab_id || "-"));
    const act = el("td", null, { class: "op" });
    if (operator) {
      act.append(button("End", async () => {
        if (!confirm(`End session ${s.handle} of ${s.owner} (${s.status})? Its lab hold is released.`)) return;
        await api(`/sessions/${encodeURIComponent(s.handle)}`, { method: "DELETE" });
      }));
      if (s.status === "waiting") {
        act.append(button("Move", async () => {
          const p = prompt(`Move session ${s.handle} of ${s.owner} to queue position (1 = next):`, "1");
          if (p === null) return;
          const position = parseInt(p, 10);
          if (!(position >= 1)) throw new Error(`position ${JSON.stringify(p)}: a number from 1`);
          if (!confirm(`Move session ${s.handle} from position ${s.position} to ${position}?`)) return;
          await api(`/sessions/${encodeURIComponent(s.handle)}/position`, {
            method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ position }),
          });
        }));
      }
    }
    tr.append(act);
    return tr;
  });
  $("sessions").tBodies[0].replaceChildren(...rows);
  const labs = q.labs.map((l) => {
    const tr = el("tr", null, { "data-lab": l.lab_id, "data-status": l.status });
    tr.append(el("td", l.lab_id), el("td", l.name), el("td", l.status, { class: "status-" + l.status }));
    tr.append(el("td", l.refcount), el("td", l.owner));
    const pic = el("td");
    if (l.status === "up" || l.status === "idle") drawing(l.lab_id, pic);
    tr.append(pic);
    const act = el("td");
    if (l.status === "up" || l.status === "idle") {
      act.append(button("Console", async () => openConsole(l.lab_id)));
      if (state.me.role !== "viewer") {
        act.append(button("debug.log", async () => download(`/labs/${l.lab_id}/logs/debug.log`, `${l.lab_id}-debug.log`)));
        const links = ((l.bed && l.bed.nodes) || []).map((n) => n[0]);
        act.append(button("pcap", async () => {
          const name = links.length === 1 ? links[0] : prompt(`Capture of which link? ${links.join(", ")}`, links[0] || "");
          if (!name) return;
          await download(`/labs/${l.lab_id}/links/${encodeURIComponent(name)}/pcap`, `${l.lab_id}-${name}.pcap`);
        }));
      }
    }
    if (operator && l.status !== "destroying") {
      act.append(button("Destroy", async () => {
        const held = l.refcount > 0 ? ` It is held by ${l.refcount} session(s), who lose it.` : "";
        if (!confirm(`Destroy lab ${l.lab_id} (${l.name})?${held}`)) return;
        await api(`/labs/${l.lab_id}?force=true`, { method: "DELETE" });
      }));
    }
    tr.append(act);
    return tr;
  });
  $("labs").tBodies[0].replaceChildren(...labs);
}

// Each lab's drawing, fetched once; a failure is shown and tried again
// at the next change.
const drawings = new Map();
async function drawing(id, td) {
  if (!drawings.has(id)) {
    drawings.set(id, api(`/labs/${id}/topology.svg`)
      .then((r) => r.blob())
      .then((b) => ({ url: URL.createObjectURL(b) }), (e) => {
        drawings.delete(id);
        return { error: String(e.message) };
      }));
  }
  const d = await drawings.get(id);
  td.replaceChildren(d.url
    ? el("img", null, { src: d.url, class: "topology", alt: `topology of ${id}` })
    : el("span", d.error, { class: "error" }));
}

async function download(path, name) {
  const blob = await (await api(path)).blob();
  const a = el("a", null, { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

// --- the events ---------------------------------------------------------

function onEvent(block) {
  let event = "message", data = "", id = null;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data += (data ? "\n" : "") + value;
    else if (field === "id") id = value;
  }
  if (id !== null) state.lastId = id;
  if (event === "gap") { refresh(); return; }
  if (!data) return;
  const e = JSON.parse(data);
  // The server's own checks (every few seconds): its health, and a fresh
  // read of the queue (heartbeat ages) without polling.
  if (e.type === "health") {
    const ok = e.action !== "failed";
    setPill("health", ok ? "server up" : `${e.subject}: ${e.attributes.reason || e.action}`, ok);
    if (e.action === "passed") { refresh(); return; }
  }
  const attrs = Object.entries(e.attributes || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  // data-time (the change, server clock) and data-received (here) give
  // the latency from the change to this page.
  const li = el("li", `${clock(e.time)} #${e.id} ${e.type} ${e.subject} ${e.action} by ${e.actor} ${attrs}`,
    { "data-id": e.id, "data-type": e.type, "data-action": e.action, "data-subject": e.subject,
      "data-time": e.time, "data-received": Date.now() / 1000 });
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
  refresh();
}

async function follow() {
  // One follower at a time: a newer one (after Resume) ends this one.
  const me = ++state.follower;
  const current = () => me === state.follower && state.token && !state.paused;
  for (;;) {
    if (!current()) return;
    const ac = new AbortController();
    state.abort = ac;
    try {
      const headers = { Accept: "text/event-stream" };
      if (state.lastId !== null) headers["Last-Event-ID"] = state.lastId;
      const r = await api("/events", { headers, signal: ac.signal });
      if (!current()) { ac.abort(); return; }
      setPill("stream", "live", true);
      refresh();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!current()) { ac.abort(); return; }
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          onEvent(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (!current()) return;
      // A token no longer valid (or demoted) signs out.
      if (/^40[13]:/.test(String(e.message))) { signOut(String(e.message)); return; }
      showError(e);
    }
    if (!current()) return;
    setPill("stream", "reconnecting", false);
    await health();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function setPill(id, text, ok) {
  const p = $(id);
  p.textContent = text;
  p.className = "pill " + (ok ? "ok" : "bad");
}

async function health() {
  try {
    const r = await fetch("/healthz");
    setPill("health", r.ok ? "server up" : `server: ${r.status}`, r.ok);
  } catch (e) { setPill("health", "server unreachable", false); }
}

// --- the console --------------------------------------------------------

function openConsole(id) {
  closeConsole();
  $("console-panel").hidden = false;
  $("console-lab").textContent = id;
  $("console-out").textContent = "";
  $("console-note").textContent = "connecting…";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/labs/${encodeURIComponent(id)}/console`,
    ["alpy-lab", "bearer." + state.token]);
  ws.binaryType = "arraybuffer";
  const text = new TextDecoder();
  ws.onopen = () => { $("console-note").textContent = "attached"; };
  ws.onmessage = (m) => {
    if (typeof m.data === "string") { $("console-note").textContent = m.data; return; }
    const out = $("console-out");
    // Escape sequences are dropped; the text stays.
    out.textContent += text.decode(m.data, { stream: true }).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
    if (out.textContent.length > 200000) out.textContent = out.textContent.slice(-100000);
    out.scrollTop = out.scrollHeight;
  };
  ws.onclose = (c) => { $("console-note").textContent = `console closed${c.reason ? ": " + c.reason : ""}`; };
  state.console = ws;
}

function closeConsole() {
  if (state.console) state.console.close();
  state.console = null;
  $("console-panel").hidden = true;
}

// --- signing in ---------------------------------------------------------

async function signIn(token) {
  state.token = token;
  try {
    state.me = await (await api("/whoami")).json();
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem("alpy-lab-token");
    $("signin-error").textContent = String(e.message);
    $("signin").hidden = false;
    return;
  }
  sessionStorage.setItem("alpy-lab-token", token);
  $("me").textContent = `${state.me.name} (${state.me.role})`;
  $("me").setAttribute("data-role", state.me.role);
  $("signin").hidden = true;
  $("signout").hidden = false;
  $("board").hidden = false;
  document.body.classList.toggle("operator", state.me.role === "operator");
  follow();
}

function signOut(why) {
  state.token = null;
  sessionStorage.removeItem("alpy-lab-token");
  if (why) sessionStorage.setItem("alpy-lab-signed-out", why);
  if (state.abort) state.abort.abort();
  closeConsole();
  location.reload();
}

window.addEventListener("DOMContentLoaded", () => {
  health();
  $("signin").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value.trim()); });
  $("signout").addEventListener("click", () => signOut());
  const why = sessionStorage.getItem("alpy-lab-signed-out");
  if (why) {
    $("signin-error").textContent = `signed out: ${why}`;
    sessionStorage.removeItem("alpy-lab-signed-out");
  }
  $("console-close").addEventListener("click", closeConsole);
  // Pause drops the stream; Resume follows again from the last event
  // seen (Last-Event-ID), so the missed ones arrive in order.
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    if (state.paused) {
      state.follower++;
      if (state.abort) state.abort.abort();
      setPill("stream", "paused", false);
    } else if (state.token) {
      follow();
    }
  });
  $("console-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.console && state.console.readyState === WebSocket.OPEN) {
      state.console.send($("console-in").value + "\n");
      $("console-in").value = "";
    }
  });
  // Heartbeat ages tick here, from the times the server sent.
  setInterval(() => {
    for (const td of document.querySelectorAll("td.age")) td.textContent = ago(Number(td.dataset.t));
  }, 1000);
  const saved = sessionStorage.getItem("alpy-lab-token");
  if (saved) signIn(saved); else $("signin").hidden = false;
});
