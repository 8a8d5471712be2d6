// Goop² messages SDK: a site's own topics (`app.<name>`) between peers, live.
//
// Shown at /p/<peerID>/… the page sends to <peerID> and hears what <peerID> sends it (on the
// owner's own site: what every peer sends). On the owner's pages: send(peerId, topic, payload)
// and every app message heard. A message is taken only while a page of the receiving peer
// listens; otherwise send rejects saying so. See docs/sdk.md.
(function (global) {
  "use strict";

  function meta(name) {
    const tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.getAttribute("content") : null;
  }

  const match = global.location.pathname.match(/^\/p\/([1-9A-HJ-NP-Za-km-z]+)\//);
  const siteHost = match ? match[1] : null;
  const token = meta("goop-site-token");

  class GoopError extends Error {
    constructor(message, status) {
      super(message);
      this.name = "GoopError";
      this.status = status;
    }
  }

  async function post(url, body) {
    const headers = { "content-type": "application/json" };
    if (token) headers["x-goop-site-token"] = token;
    let response;
    try {
      response = await fetch(url, { method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin" });
    } catch (error) {
      throw new GoopError("the console could not be reached: " + error.message, 0);
    }
    if (response.status === 204) return null;
    let reply = {};
    try { reply = await response.json(); } catch (_) { /* no JSON */ }
    throw new GoopError(reply.error || "HTTP " + response.status, response.status);
  }

  const mq = {
    /** send(topic, payload) on a site; send(peerId, topic, payload) on the owner's pages. */
    send: function (a, b, c) {
      if (siteHost) return post("/api/p/" + siteHost + "/mq/send", { topic: a, payload: b });
      return post("/api/mq/send", { peer: a, topic: b, payload: c });
    },
    /** Calls fn({from, topic, payload, at_ms}) for each message whose topic starts with
     * `prefix` (all of them without one); returns a function that stops. */
    subscribe: function (prefix, fn) {
      if (typeof prefix === "function") { fn = prefix; prefix = ""; }
      const url = siteHost
        ? "/api/p/" + siteHost + "/mq/events" + (token ? "?token=" + encodeURIComponent(token) : "")
        : "/api/mq/events";
      const stream = new EventSource(url);
      stream.onmessage = function (event) {
        let msg;
        try { msg = JSON.parse(event.data); } catch (_) { return; }
        if (!msg.topic || !msg.topic.startsWith(prefix || "")) return;
        try { fn(msg); } catch (error) { console.error(error); }
      };
      return function () { stream.close(); };
    },
  };

  global.Goop = global.Goop || {};
  global.Goop.mq = mq;
  global.Goop.GoopError = global.Goop.GoopError || GoopError;
})(window);
