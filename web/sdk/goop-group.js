// Goop² groups SDK: join a peer's groups, send to them, and hear them live.
//
// Shown at /p/<peerID>/… (a peer's site in a console), the page acts as the visitor's own peer
// toward the groups of <peerID>: join(groupId, onMessage). Shown anywhere else (the owner's
// pages), any host: join(hostId, groupId, onMessage). Events come from the local console over
// one event stream. See docs/sdk.md.
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

  async function request(url, body) {
    const headers = { "content-type": "application/json" };
    if (token) headers["x-goop-site-token"] = token;
    let response;
    try {
      response = await fetch(url, { method: "POST", headers: headers, body: JSON.stringify(body || {}), credentials: "same-origin" });
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

  // Calls for a site go to /api/p/<site>/groups/<op>; the owner's pages use /api/groups/<op>.
  function call(op, host, body) {
    if (siteHost) return request("/api/p/" + siteHost + "/groups/" + op, body);
    return request("/api/groups/" + op, Object.assign({ host: host }, body));
  }

  const handlers = new Map(); // "host/group" -> onMessage
  let stream = null;
  function listen() {
    if (stream) return;
    const url = siteHost
      ? "/api/p/" + siteHost + "/groups/events" + (token ? "?token=" + encodeURIComponent(token) : "")
      : "/api/groups/events";
    stream = new EventSource(url);
    stream.onmessage = function (event) {
      let msg;
      try { msg = JSON.parse(event.data); } catch (_) { return; }
      const handler = handlers.get(msg.host + "/" + msg.group);
      if (handler) {
        try { handler(msg); } catch (error) { console.error(error); }
      }
    };
  }

  // (groupId[, onMessage]) for a site; (hostId, groupId[, onMessage]) on the owner's pages.
  function target(args) {
    if (siteHost && (typeof args[1] === "function" || args.length < 2 || args[1] === undefined)) {
      return { host: siteHost, group: args[0], rest: Array.prototype.slice.call(args, 1) };
    }
    return { host: args[0], group: args[1], rest: Array.prototype.slice.call(args, 2) };
  }

  let current = null; // the last group joined: the default of send, setState and leave
  function pick(host, group) {
    if (group !== undefined) return { host: host || siteHost, group: group };
    if (!current) throw new GoopError("join a group first", 400);
    return current;
  }

  const group = {
    /** Joins a group; onMessage(event) hears its messages, members, state, close, host offline. */
    join: async function () {
      const t = target(arguments);
      const onMessage = t.rest[0];
      const welcome = await call("join", t.host, { group: t.group });
      if (typeof onMessage === "function") handlers.set(welcome.host + "/" + t.group, onMessage);
      listen();
      current = { host: welcome.host, group: t.group };
      return welcome;
    },
    /** Sends a payload (any JSON) to every member: send(payload[, groupId[, hostId]]). */
    send: function (payload, groupId, hostId) {
      const at = pick(hostId, groupId);
      return call("send", at.host, { group: at.group, payload: payload });
    },
    /** Replaces the group's state; every member hears it. */
    setState: function (state, groupId, hostId) {
      const at = pick(hostId, groupId);
      return call("state", at.host, { group: at.group, state: state });
    },
    /** Leaves the group (the last joined one by default). */
    leave: async function (groupId, hostId) {
      const at = pick(hostId, groupId);
      handlers.delete(at.host + "/" + at.group);
      if (current && current.host === at.host && current.group === at.group) current = null;
      await call("leave", at.host, { group: at.group });
    },
    /** The open groups of the site's peer (its `_groups`): [{id, name, app_type, members, …}]. */
    list: async function (hostId) {
      const host = hostId || siteHost;
      const url = host ? "/api/p/" + host + "/data/query" : "/api/data/query";
      const reply = await request(url, { table: "_groups" });
      if (!reply.ok) throw new GoopError(reply.error || "the request failed", reply.code || 400);
      return reply.data;
    },
    /** The groups joined: of the site's peer on a site, all of them on the owner's pages. */
    subscriptions: async function () {
      if (siteHost) return request("/api/p/" + siteHost + "/groups/joined", {});
      const response = await fetch("/api/groups", { credentials: "same-origin" });
      const all = await response.json();
      return all.joined;
    },
  };

  global.Goop = global.Goop || {};
  global.Goop.group = group;
  global.Goop.GoopError = global.Goop.GoopError || GoopError;
})(window);
