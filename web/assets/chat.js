// Live chat in the console: on a peer's page its conversation, on /chat the broadcasts and the
// conversations. The pages work without this script (forms post and redirect); with it,
// messages arrive as they are heard, and sending does not reload the page.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch) return;
  const section = document.getElementById("chat");
  const peerId = section ? section.dataset.peerId : null;
  const messages = document.getElementById("messages");
  const broadcasts = document.getElementById("broadcasts");
  const conversations = document.querySelector("#conversations tbody");
  const status = document.getElementById("live-status");
  const csrf = document.body.dataset.csrf || "";
  function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
  function post(url, body) {
    return fetch(url, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify(body) });
  }
  function flash(container, text) {
    let p = container.querySelector(".flash");
    if (!p) { p = el("p", "flash"); p.setAttribute("role", "status"); container.insertBefore(p, container.querySelector("form")); }
    p.textContent = text;
  }
  function statusOf(m) {
    const s = el("span", "status " + m.status, m.status);
    if (m.error) s.title = m.error;
    return s;
  }
  function messageItem(m, label) {
    const li = el("li", m.outgoing ? "outgoing" : "incoming");
    li.dataset.id = m.id;
    li.appendChild(el("span", "who", m.outgoing ? "you" : label));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "text", m.text));
    li.appendChild(document.createTextNode(" "));
    const small = el("small", "muted", "just now");
    if (m.outgoing) { small.appendChild(document.createTextNode(" · ")); small.appendChild(statusOf(m)); }
    li.appendChild(small);
    return li;
  }
  const peerLabel = document.querySelector("h1") ? document.querySelector("h1").textContent : "";
  function showMessage(m) {
    if (!messages || m.peer_id !== peerId) return;
    const existing = messages.querySelector('li[data-id="' + m.id + '"]');
    if (existing) {
      const old = existing.querySelector(".status");
      if (old) old.replaceWith(statusOf(m));
      return;
    }
    messages.appendChild(messageItem(m, peerLabel));
    const none = document.getElementById("no-messages");
    if (none) none.remove();
    if (!m.outgoing) post("/api/chat/" + encodeURIComponent(peerId) + "/read", {});
  }
  function showBroadcast(b) {
    if (!broadcasts) return;
    const mine = b.from === document.body.dataset.me;
    const li = el("li", mine ? "outgoing" : "incoming");
    const who = el("span", "who");
    if (mine) who.textContent = "you"; else { const a = el("a", null, b.from.slice(0, 8) + "…"); a.href = "/peer/" + encodeURIComponent(b.from); who.appendChild(a); }
    li.appendChild(who);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "text", b.text));
    broadcasts.insertBefore(li, broadcasts.firstChild);
    const none = document.getElementById("no-broadcasts");
    if (none) none.remove();
  }
  function countUnread(m, change) {
    if (!conversations) return;
    const row = Array.from(conversations.rows).find(function (r) { return r.dataset.peerId === m; });
    if (!row) { if (change > 0) window.location.reload(); return; }
    const cell = row.querySelector(".unread");
    const badge = cell.querySelector(".badge");
    const n = change === 0 ? 0 : (badge ? Number(badge.textContent) : 0) + change;
    cell.textContent = "";
    if (n > 0) cell.appendChild(el("span", "badge unread", String(n)));
  }
  document.querySelectorAll("form.chat-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const input = form.querySelector('input[name="text"]');
      const text = input.value;
      if (!text.trim()) return;
      input.value = "";
      post(form.dataset.api, { text: text }).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { flash(form.parentNode, body.error || "Not sent."); input.value = text; return; }
          if (body.sent !== undefined) flash(form.parentNode, "Sent to " + body.sent + " online peer(s): " + body.delivered + " delivered, " + body.failed + " not.");
          else if (body.status === "failed") flash(form.parentNode, body.error || "Not delivered.");
          else flash(form.parentNode, "Delivered.");
        });
      }, function () { flash(form.parentNode, "The console did not answer."); input.value = text; });
    });
  });
  const source = new EventSource("/api/chat/events");
  source.onopen = function () {
    if (status) { status.dataset.state = "live"; status.textContent = "live"; }
    if (section) section.dataset.live = "yes";
  };
  source.onerror = function () { if (status) { status.dataset.state = "reconnecting"; status.textContent = "reconnecting…"; } };
  source.onmessage = function (event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    if (msg.kind === "reload") { window.location.reload(); return; }
    if (msg.kind === "message" || msg.kind === "status") {
      showMessage(msg.message);
      if (msg.kind === "message" && !msg.message.outgoing && msg.message.peer_id !== peerId) countUnread(msg.message.peer_id, 1);
    } else if (msg.kind === "read") {
      countUnread(msg.peer_id, 0);
    } else if (msg.kind === "broadcast") {
      showBroadcast(msg.broadcast);
    }
  };
})();
