// deployhook's dashboard: refresh the live part every few seconds, and stream the log of
// the deploy that was running when the page loaded. The page works without this script.
"use strict";

const REFRESH_MS = 3000;

// Refreshes are numbered: an answer older than the one shown is dropped, or it would put
// back a state the page already moved past.
let latest = 0;
let shown = 0;

async function refresh() {
  const ticket = ++latest;
  try {
    const response = await fetch("/dashboard/live", { credentials: "same-origin" });
    if (response.status === 401) { window.location = "/login"; return; }
    if (!response.ok) { return; }
    const html = await response.text();
    if (ticket > shown) {
      document.getElementById("live").innerHTML = html;
      shown = ticket;
    }
  } catch (_) { /* the server restarts; try again at the next tick */ }
}

async function streamLog(pre) {
  const response = await fetch(pre.dataset.src, { credentials: "same-origin" });
  if (!response.ok || !response.body) { return; }
  pre.textContent = "";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) { break; }
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent += decoder.decode(value, { stream: true });
    if (atBottom) { pre.scrollTop = pre.scrollHeight; }
  }
  // The log ends once the deploy's end is committed: refresh the tables now, not at the
  // next tick, so the page never shows the log ended beside a row still running. Only
  // then does the page say the log ended.
  const needed = latest + 1;
  // A few tries: if the server stops answering, the next tick (or a reload) catches up.
  for (let tries = 0; shown < needed && tries < 10; tries++) {
    await refresh();
    if (shown < needed) { await new Promise((done) => setTimeout(done, 500)); }
  }
  pre.dataset.ended = "true";
  const status = document.getElementById("live-log-status");
  if (status) { status.textContent = "ended"; }
}

document.addEventListener("DOMContentLoaded", () => {
  setInterval(refresh, REFRESH_MS);
  const log = document.getElementById("live-log");
  if (log) { streamLog(log); }
});
