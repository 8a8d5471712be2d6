// A group's page, live: messages and members arrive as the group hears them, and saying
// something does not reload the page. The page works without this script.
(function () {
  "use strict";
  const room = document.getElementById("room");
  if (!room || !window.EventSource || !window.fetch) return;
  const host = room.dataset.host, group = room.dataset.group;
  const me = document.body.dataset.me;
  const messages = document.getElementById("messages");
  const status = document.getElementById("live-status");
  function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
  // Labels of the members the page was rendered with; a newcomer shows by its short ID.
  const labels = {};
  document.querySelectorAll("#members .member").forEach(function (m) { labels[m.dataset.peerId] = m.dataset.label; });
  function short(id) { return labels[id] || (id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id); }
  function show(from, payload) {
    const mine = from === me;
    const li = el("li", mine ? "outgoing" : "incoming");
    li.appendChild(el("span", "who", mine ? "you" : short(from)));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "text", payload && typeof payload.text === "string" ? payload.text : JSON.stringify(payload)));
    messages.appendChild(li);
    const none = document.getElementById("no-messages");
    if (none) none.remove();
  }
  const form = room.querySelector("form.chat-form");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const input = form.querySelector('input[name="text"]');
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    fetch("/api/groups/send", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ host: host, group: group, payload: { text: text } }),
    }).then(function (response) {
      if (response.ok) return;
      input.value = text;
      return response.json().then(function (body) {
        let p = room.querySelector(".flash");
        if (!p) { p = el("p", "flash"); room.insertBefore(p, form); }
        p.textContent = body.error || "Not sent.";
      });
    });
  });
  const source = new EventSource("/api/groups/events");
  source.onopen = function () { if (status) { status.dataset.state = "live"; status.textContent = "live"; } room.dataset.live = "yes"; };
  source.onerror = function () { if (status) { status.dataset.state = "reconnecting"; status.textContent = "reconnecting…"; } };
  source.onmessage = function (event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    if (msg.kind === "reload") { window.location.reload(); return; }
    if (msg.host !== host || msg.group !== group) return;
    if (msg.kind === "msg") show(msg.from, msg.payload);
    else if (msg.kind === "members" || msg.kind === "welcome" || msg.kind === "closed") window.location.reload();
    else if (msg.kind === "host_offline") document.getElementById("host-state").textContent = "host offline";
    else if (msg.kind === "host_online") document.getElementById("host-state").textContent = "host online";
  };
})();
