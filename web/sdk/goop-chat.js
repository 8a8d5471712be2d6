// Goop² chat SDK: direct messages with a peer, live.
//
// Shown at /p/<peerID>/… the page chats with <peerID> as the visitor's own peer: send(text),
// messages(), subscribe(fn). On the owner's pages: send(peerId, text), messages(peerId),
// broadcast(text), broadcasts(), subscribe(fn) for everything. See docs/sdk.md.
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

  async function request(url, body, method) {
    const headers = { "content-type": "application/json" };
    if (token) headers["x-goop-site-token"] = token;
    let response;
    try {
      response = await fetch(url, method === "GET"
        ? { credentials: "same-origin" }
        : { method: "POST", headers: headers, body: JSON.stringify(body || {}), credentials: "same-origin" });
    } catch (error) {
      throw new GoopError("the console could not be reached: " + error.message, 0);
    }
    if (response.status === 204) return null;
    let reply;
    try { reply = await response.json(); } catch (_) {
      throw new GoopError("the console answered HTTP " + response.status + " without JSON", response.status);
    }
    if (!response.ok) throw new GoopError(reply.error || "the request failed", response.status);
    return reply;
  }

  function ownerOnly(what) {
    if (siteHost) throw new GoopError(what + " is for the owner's pages; a site chats with its own peer", 403);
  }

  const chat = {
    /** Sends a direct message; resolves with it, `status` "delivered" or "failed" (and `error`). */
    send: function (peerOrText, text) {
      if (siteHost) return request("/api/p/" + siteHost + "/chat/send", { text: peerOrText });
      return request("/api/chat/" + encodeURIComponent(peerOrText), { text: text });
    },
    /** The conversation, oldest first: [{id, peer_id, outgoing, text, at_ms, read, status, error}]. */
    messages: function (peerOrOptions, options) {
      if (siteHost) return request("/api/p/" + siteHost + "/chat/messages", peerOrOptions || {});
      const o = options || {};
      const query = [];
      if (o.before !== undefined) query.push("before=" + encodeURIComponent(o.before));
      if (o.limit !== undefined) query.push("limit=" + encodeURIComponent(o.limit));
      return request("/api/chat/" + encodeURIComponent(peerOrOptions) + (query.length ? "?" + query.join("&") : ""), null, "GET");
    },
    /** Sends a broadcast to every online peer: {sent, delivered, failed}. */
    broadcast: function (text) {
      ownerOnly("broadcast");
      return request("/api/chat/broadcast", { text: text });
    },
    /** The broadcasts heard and sent lately. */
    broadcasts: function () {
      ownerOnly("broadcasts");
      return request("/api/chat/broadcasts", null, "GET");
    },
    /** Calls fn(event) for every message and status change ({kind, message}); returns a stop function. */
    subscribe: function (fn) {
      const url = siteHost
        ? "/api/p/" + siteHost + "/chat/events" + (token ? "?token=" + encodeURIComponent(token) : "")
        : "/api/chat/events";
      const stream = new EventSource(url);
      stream.onmessage = function (event) {
        let msg;
        try { msg = JSON.parse(event.data); } catch (_) { return; }
        try { fn(msg); } catch (error) { console.error(error); }
      };
      return function () { stream.close(); };
    },
  };

  global.Goop = global.Goop || {};
  global.Goop.chat = chat;
  global.Goop.GoopError = global.Goop.GoopError || GoopError;
})(window);
