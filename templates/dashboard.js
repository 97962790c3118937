// deployhook's dashboard: refresh the live part every few seconds, and stream the log of
// the deploy that was running when the page loaded. The page works without this script.
"use strict";

const REFRESH_MS = 3000;

async function refresh() {
  try {
    const response = await fetch("/dashboard/live", { credentials: "same-origin" });
    if (response.status === 401) { window.location = "/login"; return; }
    if (response.ok) { document.getElementById("live").innerHTML = await response.text(); }
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
}

document.addEventListener("DOMContentLoaded", () => {
  setInterval(refresh, REFRESH_MS);
  const log = document.getElementById("live-log");
  if (log) { streamLog(log); }
});
