// Keeps the /groups page current: the page works without this script; with it, it reloads
// when something in the groups changes (a member joins or leaves, a host goes offline or comes
// back, an invitation arrives), unless the owner is typing in one of its forms.
(function () {
  "use strict";
  if (!window.EventSource) return;
  const status = document.getElementById("live-status");
  const source = new EventSource("/api/groups/events");
  let pending = null;
  function busy() { const a = document.activeElement; return a && (a.tagName === "INPUT" || a.tagName === "SELECT") && a.value; }
  function reload() {
    if (pending) return;
    pending = setTimeout(function retry() { if (busy()) { pending = setTimeout(retry, 1000); return; } window.location.reload(); }, 300);
  }
  source.onopen = function () { if (status) { status.dataset.state = "live"; status.textContent = "live"; } };
  source.onerror = function () { if (status) { status.dataset.state = "reconnecting"; status.textContent = "reconnecting…"; } };
  source.onmessage = function (event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    if (msg.kind === "msg" || msg.kind === "state") return;
    reload();
  };
})();
