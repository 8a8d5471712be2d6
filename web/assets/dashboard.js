// Live updates for the hub dashboard: the page works without this script; with it, joins,
// leaves and changes arrive from /events?changes=1 without reloading.
(function () {
  "use strict";
  const tbody = document.querySelector("#peers tbody");
  const count = document.getElementById("peer-count");
  const recent = document.getElementById("recent");
  if (!tbody || !window.EventSource) return;

  function shortId(id) { return id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id; }
  function ago(ts) {
    const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }
  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }
  function badge(name) { return text("span", name, "badge " + name); }

  function row(msg) {
    const tr = document.createElement("tr");
    tr.dataset.peerId = msg.peerId;
    tr.appendChild(text("td", msg.content || "", "label"));
    const idCell = document.createElement("td");
    const code = text("code", shortId(msg.peerId));
    code.title = msg.peerId;
    idCell.appendChild(code);
    tr.appendChild(idCell);
    const trust = document.createElement("td");
    trust.className = "trust";
    if (msg.verified) trust.appendChild(badge("verified"));
    trust.appendChild(badge(msg.signed ? "signed" : "unsigned"));
    tr.appendChild(trust);
    const addrs = document.createElement("td");
    addrs.className = "addrs";
    (msg.addrs || []).forEach(function (a) { addrs.appendChild(text("code", a)); addrs.appendChild(document.createElement("br")); });
    tr.appendChild(addrs);
    const seen = text("td", ago(msg.ts || Date.now()), "seen");
    seen.dataset.ts = msg.ts || Date.now();
    tr.appendChild(seen);
    return tr;
  }
  function find(id) {
    return Array.from(tbody.rows).find(function (r) { return r.dataset.peerId === id; });
  }
  const noun = document.getElementById("peer-noun");
  function updateCount() {
    count.textContent = tbody.rows.length;
    if (noun) noun.textContent = tbody.rows.length === 1 ? "peer" : "peers";
    const none = document.getElementById("no-peers");
    if (none) none.hidden = tbody.rows.length > 0;
  }
  function note(msg, verb, label) {
    const li = document.createElement("li");
    li.className = msg.type;
    const when = text("span", "0 s ago", "when");
    when.dataset.ts = Date.now();
    li.appendChild(when);
    li.appendChild(document.createTextNode(" " + (label || "") + " "));
    li.appendChild(text("code", shortId(msg.peerId)));
    li.appendChild(document.createTextNode(" " + verb));
    recent.insertBefore(li, recent.firstChild);
    while (recent.children.length > 50) recent.removeChild(recent.lastChild);
  }

  const status = document.getElementById("live-status");
  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }
  const source = new EventSource("/events?changes=1");
  source.onopen = function () { setStatus("live", "live"); };
  source.onerror = function () { setStatus("reconnecting", "reconnecting…"); };
  source.addEventListener("reset", function () {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    updateCount();
  });
  source.onmessage = function (event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    if (!msg || !msg.peerId) return;
    const existing = find(msg.peerId);
    if (msg.type === "offline") {
      if (existing) {
        note(msg, "left", existing.querySelector(".label").textContent);
        existing.remove();
      }
    } else if (msg.type === "online" || msg.type === "update") {
      const fresh = row(msg);
      if (existing) existing.replaceWith(fresh);
      else { tbody.appendChild(fresh); note(msg, "joined", msg.content); }
    }
    updateCount();
  };
  setInterval(function () {
    document.querySelectorAll("[data-ts]").forEach(function (el) { el.textContent = ago(Number(el.dataset.ts)); });
  }, 5000);
})();
