// kstate dashboard: polls /cluster every second and follows /changes over a websocket.
// The websocket reconnects with backoff and resumes with from=<partition>:<last offset
// seen>, so the page survives the node it came from restarting (no gap, no duplicate).
"use strict";

const POLL_MS = 1000;
const POLL_TIMEOUT_MS = 3000;
const FEED_ROWS = 200;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const PALETTE = ["#3b7dd8", "#e07b39", "#2f9e6e", "#9b59b6", "#d64561", "#16a3b8",
                 "#8c6d1f", "#5d6bd6", "#c0507e", "#4f8a3c"];

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("data-") || k === "title" || k === "href") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pill(id, cls, text) {
  const node = $(id);
  node.className = "pill " + cls;
  node.textContent = text;
}

function fmtSeconds(s) {
  if (s == null) return "–";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// ---- cluster -------------------------------------------------------------------------

const colours = new Map(); // url -> colour; stable for the life of the page

function colourOf(url) {
  if (!colours.has(url)) colours.set(url, PALETTE[colours.size % PALETTE.length]);
  return colours.get(url);
}

function renderMembers(doc) {
  const body = $("members").tBodies[0];
  body.replaceChildren();
  const totals = { local_reads: 0, forwards: 0, writes: 0, unavailable: 0 };
  for (const m of doc.members) {
    const r = m.readyz || {};
    const counters = r.router || {};
    for (const k of Object.keys(totals)) totals[k] += counters[k] || 0;
    const writer = r.writer ? Object.entries(r.writer).map(([k, v]) => `${k}=${v}`).join(" ") : "";
    const num = (v) => el("td", { class: "num" }, v == null ? "–" : v);
    body.append(el("tr", { "data-url": m.url, "data-status": m.status },
      el("td", {}, el("span", { class: "swatch", style: `background:${colourOf(m.url)}` })),
      el("td", {}, el("a", { href: `${location.protocol}//${m.url}/` }, m.url), m.self ? " (this node)" : ""),
      el("td", { class: "status-" + m.status, title: m.error || "" }, m.status.replace("_", " ")),
      num(r.owned ? r.owned.length : null),
      num(counters.local_reads), num(counters.forwards), num(counters.writes),
      num(counters.unavailable),
      el("td", { title: writer }, writer.length > 40 ? writer.slice(0, 40) + "…" : writer),
      el("td", { class: "num" }, fmtSeconds(r.uptime_seconds)),
      el("td", { class: "num" }, m.latency_ms == null ? "–" : m.latency_ms + " ms")));
  }
  const c = $("counters");
  c.replaceChildren();
  const add = (label, value) => c.append(el("span", {}, label + " ", el("b", {}, value)));
  add("reads (all members)", totals.local_reads);
  add("forwards (all members)", totals.forwards);
  add("writes (all members)", totals.writes);
  add("503s (all members)", totals.unavailable);
  if (doc.proxy) {
    add("proxied by this node", doc.proxy.forwarded);
    add("proxy failures", doc.proxy.failures);
  }
  if (doc.feed) {
    add("live feed subscribers", doc.feed.subscribers);
    add("feed published", doc.feed.published);
    add("lagging cut off", doc.feed.dropped_subscribers);
  }
}

function ownerStats(doc, p) {
  // position/target of partition p as its owner reports it
  const owner = doc.owners[String(p)];
  const m = doc.members.find((x) => x.url === owner);
  const parts = m && m.readyz ? m.readyz.partitions : null;
  return parts ? parts[String(p)] : null;
}

function progress(stats) {
  if (!stats) return null;
  if (stats.target < 0) return 0;  // not known yet: the partition has no leader
  if (stats.target === 0) return 1;
  return Math.min(1, stats.position / stats.target);
}

function recordNotes(stats) {
  // "3 unusable · 1 wrong partition": counts of records kstate did not apply as written
  const notes = [];
  if (stats.invalid) notes.push(`${stats.invalid} unusable`);
  if (stats.wrong_partition) notes.push(`${stats.wrong_partition} wrong partition`);
  return notes.join(" · ");
}

function unusableReasons(stats) {
  const reasons = Object.entries(stats.unusable || {}).map(([why, n]) => `\n  ${n} × ${why}`);
  return reasons.join("");
}

function renderGrid(doc) {
  const grid = $("grid");
  grid.replaceChildren();
  const bars = $("catchup");
  bars.replaceChildren();
  for (let p = 0; p < doc.num_partitions; p++) {
    const owner = doc.owners[String(p)];
    const stats = ownerStats(doc, p);
    const done = progress(stats);
    const cell = el("div", {
      class: owner ? "cell" : "cell unowned", "data-partition": String(p),
      "data-owner": owner || "",
      title: owner ? `partition ${p} → ${owner}` : `partition ${p}: no owner`,
    }, el("div", { class: "p" }, p), el("div", { class: "owner" }, owner ? owner.replace(/^.*:/, ":") : "no owner"));
    if (owner) cell.style.background = colourOf(owner);
    const ownerReport = doc.members.find((x) => x.url === owner);
    if (owner && (!ownerReport || ownerReport.status === "unreachable")) {
      cell.classList.add("down");
      cell.title += " (unreachable)";
    }
    if (done != null) cell.append(el("div", { class: "mini", style: `width:${(done * 100).toFixed(1)}%` }));
    // records that did not apply as written (README, "Other producers")
    const odd = stats ? recordNotes(stats) : "";
    if (odd) {
      cell.append(el("div", { class: "odd", "data-kind": "records" }, odd));
      cell.title += `\n${odd}` + unusableReasons(stats);
    }
    if (stats && stats.halted) {
      cell.classList.add("halted");
      cell.append(el("div", { class: "odd", "data-kind": "halted" }, "halted"));
      cell.title += `\nhalted at ${stats.halted}`;
    }
    grid.append(cell);

    let text = stats ? `${stats.position} / ${stats.target < 0 ? "?" : stats.target}` + (stats.caught_up ? " ✓" : " catching up") : "unknown";
    if (stats && stats.halted) text = `halted at ${stats.halted}`;
    else if (odd) text += ` · ${odd}`;
    bars.append(
      el("span", { class: "label" }, "p" + p),
      el("div", { class: "track", "data-partition": String(p) },
        el("div", { class: "fill", style: `width:${((done || 0) * 100).toFixed(1)}%;background:${owner ? colourOf(owner) : "#9aa3ad"}` })),
      el("span", { class: "text" }, text));
  }
}

async function poll() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), POLL_TIMEOUT_MS);
  try {
    const r = await fetch("/cluster", { cache: "no-store", signal: abort.signal });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const doc = await r.json();
    $("node").textContent = doc.node;
    $("topic").textContent = doc.topic;
    $("generation").textContent = doc.generation;
    $("num-partitions").textContent = doc.num_partitions;
    for (const m of doc.members) colourOf(m.url);
    renderMembers(doc);
    renderGrid(doc);
    const bad = doc.members.filter((m) => m.status !== "ready").length;
    pill("cluster-status", bad ? "wait" : "ok",
         `cluster: ${doc.members.length} members` + (bad ? `, ${bad} not ready` : ""));
  } catch (e) {
    pill("cluster-status", "bad", "cluster: unreachable (" + (e.name === "AbortError" ? "timeout" : e.message) + ")");
  } finally {
    clearTimeout(timer);
    setTimeout(poll, POLL_MS);
  }
}

// ---- feed ----------------------------------------------------------------------------

const feed = {
  positions: {}, // partition -> next offset expected (hello, then every change)
  received: 0,
  backoff: BACKOFF_MIN_MS,
  pending: [],
  scheduled: false,
  connects: 0,
};
window.kstateFeed = feed; // for tests and curious people

function fromParam() {
  const parts = Object.entries(feed.positions).map(([p, o]) => `${p}:${o - 1}`);
  return parts.join(",");
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const from = fromParam();
  const url = `${proto}//${location.host}/changes` + (from ? "?from=" + encodeURIComponent(from) : "");
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    retry("could not open: " + e.message);
    return;
  }
  feed.connects += 1;
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") {
      for (const [p, o] of Object.entries(msg.positions)) feed.positions[p] = o;
      feed.backoff = BACKOFF_MIN_MS;
      pill("feed-status", "ok", `feed: live via ${msg.node}` + (from ? " (resumed)" : ""));
      return;
    }
    if (msg.type === "halted") {
      // the feed stopped this partition at a batch it cannot decode (README, "Operating")
      msg.key = `partition ${msg.partition} halted`;
      msg.halted = true;
    } else {
      feed.positions[msg.partition] = msg.offset + 1;
    }
    feed.received += 1;
    feed.pending.push(msg);
    if (feed.pending.length > FEED_ROWS) feed.pending.splice(0, feed.pending.length - FEED_ROWS);
    if (!feed.scheduled) {
      feed.scheduled = true;
      requestAnimationFrame(flush);
    }
  };
  ws.onclose = (ev) => retry(`closed ${ev.code}${ev.reason ? " " + ev.reason : ""}`);
}

function retry(why) {
  const wait = feed.backoff;
  feed.backoff = Math.min(BACKOFF_MAX_MS, feed.backoff * 2);
  pill("feed-status", "bad", `feed: ${why}; reconnecting in ${(wait / 1000).toFixed(1)} s`);
  setTimeout(connect, wait);
}

function short(text) {
  return text.length > 120 ? text.slice(0, 120) + "…" : text;
}

function flush() {
  feed.scheduled = false;
  const body = $("feed").tBodies[0];
  const now = new Date().toLocaleTimeString();
  for (const m of feed.pending) {
    const v = m.value;
    const shown = m.halted ? `no change at or past this offset: ${m.reason}`
      : v == null ? "deleted" : short(v.name != null ? String(v.name) : JSON.stringify(v));
    const cls = m.halted ? "fresh halted" : v == null ? "fresh deleted" : "fresh";
    const row = el("tr", { class: cls, "data-key": m.key },
      el("td", {}, now),
      el("td", {}, `${m.partition}@${m.offset}`),
      el("td", { class: "key" }, m.key),
      el("td", { class: "value" }, shown));
    body.prepend(row);
  }
  feed.pending = [];
  while (body.rows.length > FEED_ROWS) body.deleteRow(body.rows.length - 1);
  $("feed-count").textContent = `${feed.received} received`;
}

poll();
connect();
