// Live updates of the console's peer list: the page works without this script; with it, peers
// appear, change and leave as the PeerTable hears of them.
(function () {
  "use strict";
  const tbody = document.querySelector("#peers tbody");
  const status = document.getElementById("live-status");
  if (!tbody || !window.EventSource) return;
  function shortId(id) { return id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id; }
  function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
  function link(href, text) { const a = document.createElement("a"); a.href = href; a.textContent = text; return a; }
  function find(id) { return Array.from(tbody.rows).find(function (r) { return r.dataset.peerId === id; }); }
  function sources(list) {
    return (list || []).map(function (s) { return s === "Gossip" ? "gossip" : (s.Hub ? "hub " + s.Hub : String(s)); }).join(", ");
  }
  const csrf = document.body.dataset.csrf || "";
  function hidden(name, value) { const i = document.createElement("input"); i.type = "hidden"; i.name = name; i.value = value; return i; }
  function favorite(peer) {
    const td = cell("", "favorite");
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/peer/" + encodeURIComponent(peer.peer_id) + "/favorite";
    form.className = "inline";
    form.appendChild(hidden("csrf", csrf));
    form.appendChild(hidden("favorite", peer.favorite ? "0" : "1"));
    const button = document.createElement("button");
    button.type = "submit";
    button.className = "star";
    button.setAttribute("aria-pressed", String(!!peer.favorite));
    button.title = peer.favorite ? "Remove from favourites" : "Add to favourites";
    button.textContent = peer.favorite ? "★" : "☆";
    form.appendChild(button);
    td.appendChild(form);
    return td;
  }
  function reach(r) {
    if (!r || r.status === "unknown") return ["unknown", "not probed yet"];
    if (r.status === "reachable") return ["reachable", "yes, " + r.rtt_ms + " ms"];
    return ["unreachable", "no, not answering", r.reason];
  }
  function row(peer) {
    const tr = document.createElement("tr");
    tr.dataset.peerId = peer.peer_id;
    tr.appendChild(favorite(peer));
    const label = cell("", "label");
    label.appendChild(link("/peer/" + encodeURIComponent(peer.peer_id), peer.label || ""));
    badge(label, peer.peer_id);
    tr.appendChild(label);
    const id = document.createElement("td");
    const code = document.createElement("code");
    code.textContent = shortId(peer.peer_id);
    code.title = peer.peer_id;
    id.appendChild(code);
    tr.appendChild(id);
    tr.appendChild(cell(peer.state, "state"));
    const r = reach(peer.reachability);
    const reachCell = cell(r[1], "reach " + r[0]);
    if (r[2]) reachCell.title = r[2];
    tr.appendChild(reachCell);
    const trust = cell("");
    if (peer.verified) { const b = document.createElement("span"); b.className = "badge verified"; b.textContent = "verified"; trust.appendChild(b); }
    tr.appendChild(trust);
    tr.appendChild(cell(sources(peer.sources), "sources"));
    const site = document.createElement("td");
    site.appendChild(link("/visit/" + encodeURIComponent(peer.peer_id) + "/", "open"));
    tr.appendChild(site);
    return tr;
  }
  // Unread messages per peer, as the page was rendered, then as chat says.
  const unread = {};
  tbody.querySelectorAll("tr").forEach(function (tr) {
    const b = tr.querySelector(".badge.unread");
    if (b) unread[tr.dataset.peerId] = Number(b.textContent);
  });
  function badge(labelCell, id) {
    const old = labelCell.querySelector(".badge.unread");
    if (old) { old.previousSibling && old.previousSibling.nodeType === 3 && old.previousSibling.remove(); old.remove(); }
    if (!unread[id]) return;
    const a = link("/peer/" + encodeURIComponent(id) + "#chat", String(unread[id]));
    a.className = "badge unread";
    a.title = "unread messages";
    labelCell.appendChild(document.createTextNode(" "));
    labelCell.appendChild(a);
  }
  const chat = new EventSource("/api/chat/events");
  chat.onmessage = function (event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    let id;
    if (msg.kind === "message" && !msg.message.outgoing) { id = msg.message.peer_id; unread[id] = (unread[id] || 0) + 1; }
    else if (msg.kind === "read") { id = msg.peer_id; delete unread[id]; }
    else return;
    const tr = find(id);
    if (tr) badge(tr.querySelector(".label"), id);
  };
  const pageSize = Number(tbody.dataset.pageSize) || 100;
  const source = new EventSource("/api/peers/events");
  source.onopen = function () { if (status) { status.dataset.state = "live"; status.textContent = "live"; } };
  source.onerror = function () { if (status) { status.dataset.state = "reconnecting"; status.textContent = "reconnecting…"; } };
  source.onmessage = function (event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    if (msg.change === "reload") { window.location.reload(); return; }
    const id = msg.peer ? msg.peer.peer_id : msg.peerId;
    const existing = find(id);
    if (msg.change === "updated") {
      const fresh = row(msg.peer);
      // A page holds its size at most: newcomers beyond it are on the next page.
      if (existing) existing.replaceWith(fresh); else if (tbody.rows.length < pageSize) tbody.appendChild(fresh);
    } else if (msg.change === "offline" && existing) {
      existing.querySelector(".state").textContent = "offline";
    } else if (msg.change === "removed" && existing) {
      existing.remove();
    }
    const none = document.getElementById("no-peers");
    if (none) none.hidden = tbody.rows.length > 0;
  };
})();
