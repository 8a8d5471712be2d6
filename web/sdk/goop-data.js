// Goop² data SDK: one API for a site's data, wherever the site is shown.
//
// Shown at /p/<peerID>/… (a peer's site in a console), calls go to /api/p/<peerID>/data/<op>,
// which the console forwards to that peer over /goop/data/1.0.0 with the visitor's own peer as
// the caller. Shown anywhere else (the owner's pages), calls go to /api/data/<op>.
// See docs/sdk.md.
(function (global) {
  "use strict";

  function meta(name) {
    const tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.getAttribute("content") : null;
  }

  const match = global.location.pathname.match(/^\/p\/([1-9A-HJ-NP-Za-km-z]+)\//);
  const hostId = match ? match[1] : null;
  const base = hostId ? "/api/p/" + hostId + "/data/" : "/api/data/";
  const token = meta("goop-site-token");

  class GoopError extends Error {
    constructor(message, status) {
      super(message);
      this.name = "GoopError";
      this.status = status;
    }
  }

  async function call(op, body) {
    const headers = { "content-type": "application/json" };
    if (token) headers["x-goop-site-token"] = token;
    let response;
    try {
      response = await fetch(base + op, {
        method: "POST",
        headers: headers,
        body: JSON.stringify(body || {}),
        credentials: "same-origin",
      });
    } catch (error) {
      throw new GoopError("the console could not be reached: " + error.message, 0);
    }
    let reply;
    try {
      reply = await response.json();
    } catch (_) {
      throw new GoopError("the console answered HTTP " + response.status + " without JSON", response.status);
    }
    if (!reply.ok) throw new GoopError(reply.error || "the request failed", response.status);
    return reply.data;
  }

  function queryBody(table, options) {
    const o = options || {};
    const body = { table: table };
    if (o.where) body.where = o.where;
    if (o.args) body.args = o.args;
    if (o.columns) body.columns = o.columns;
    if (o.order) body.order = o.order;
    if (o.limit !== undefined) body.limit = o.limit;
    if (o.offset !== undefined) body.offset = o.offset;
    return body;
  }

  const data = {
    /** The tables of the site's peer, with their access policies. */
    tables: () => call("tables"),
    /** A table's columns and policies. */
    describe: (table) => call("describe", { table: table }),
    /** Rows: options {where, args, columns, order, limit (≤ 1000), offset}. */
    find: (table, options) => call("query", queryBody(table, options)),
    /** The first matching row, or null. */
    findOne: (table, options) => call("query-one", queryBody(table, options)),
    /** How many rows match: options {where, args}. */
    count: (table, options) => call("count", queryBody(table, options)),
    /** Inserts a row; resolves to {_id}. */
    insert: (table, row) => call("insert", { table: table, data: row }),
    /** Changes the row with this _id; resolves to {updated}. */
    update: (table, id, changes) => call("update", { table: table, id: id, data: changes }),
    /** Deletes the row with this _id; resolves to {deleted}. */
    remove: (table, id) => call("delete", { table: table, id: id }),
    /** Calls the site's Lua function `name` with `params`. */
    call: (name, params) => call(hostId ? "lua/call" : "lua-call", { function: name, params: params || {} }),
    /** The site's Lua functions. */
    functions: () => call(hostId ? "lua/list" : "lua-list"),
    /** The caller's role, and with a table its permissions there. */
    role: (table) => call("role", table ? { table: table } : {}),
  };

  /** {myId, hostId, isOwner}: who is looking, whose site this is. */
  async function peer() {
    const me = meta("goop-self");
    const host = meta("goop-host") || hostId;
    if (me && host) return { myId: me, hostId: host, isOwner: me === host };
    const role = await call("role");
    return { myId: role.peerId, hostId: role.hostId, isOwner: role.role === "owner" };
  }

  global.Goop = Object.assign(global.Goop || {}, { data: data, peer: peer, GoopError: GoopError });
})(window);
