// Goop² data SDK: one API for a site's data, wherever the site is shown.
//
// Shown at /p/<peerID>/… (a peer's site in a console), calls go to /api/p/<peerID>/data/<op>,
// which the console forwards to that peer over /goop/data/1.0.0 with the visitor's own peer as
// the caller. Shown anywhere else (the owner's pages), calls go to /api/data/<op>.
//
// Besides its own names the SDK answers to the names sites of the original Goop use (query,
// getBy, pluck, distinct, aggregate, updateWhere, upsert, orm, …). The peer has no op for some of
// them; those are built here from the ops it has, on at most 1,000 matching rows. See docs/sdk.md.
(function (global) {
  "use strict";

  /** The most rows one query returns (the peer's bound); the built-up ops work within it. */
  const MAX_ROWS = 1000;

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

  /** The request body of a read; `fields` is the original SDK's name for `columns`. */
  function queryBody(table, options) {
    const o = options || {};
    const body = { table: table };
    if (o.where) body.where = o.where;
    if (o.args) body.args = o.args;
    if (o.columns || o.fields) body.columns = o.columns || o.fields;
    if (o.order) body.order = o.order;
    if (o.limit !== undefined) body.limit = o.limit;
    if (o.offset !== undefined) body.offset = o.offset;
    return body;
  }

  /** A column name goes into a filter, so it must be a plain name. */
  function checkColumn(column, what) {
    if (typeof column !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(column)) {
      throw new GoopError(what + ": " + JSON.stringify(column) + " is not a column name", 400);
    }
    return column;
  }

  /** Every matching row (only `columns`), or a rejection when more than MAX_ROWS match. */
  async function boundedRows(table, options, columns, what) {
    const o = options || {};
    const rows = await call("query", queryBody(table, {
      where: o.where, args: o.args, order: o.order, columns: columns, limit: MAX_ROWS,
    }));
    if (rows.length === MAX_ROWS) {
      const matching = await call("count", queryBody(table, { where: o.where, args: o.args }));
      if (matching > MAX_ROWS) {
        throw new GoopError(what + " works on at most 1,000 rows and " + matching +
          " match; narrow `where`", 413);
      }
    }
    return rows;
  }

  /** The row or nothing: a 404 for one row (gone, or not the caller's) is not a failure here. */
  async function eachRow(rows, what, change) {
    let affected = 0;
    for (const row of rows) {
      try {
        affected += await change(row._id);
      } catch (error) {
        if (error.status === 404) continue;
        error.message = what + " stopped after changing " + affected +
          (affected === 1 ? " row: " : " rows: ") + error.message;
        error.affected = affected;
        throw error;
      }
    }
    return affected;
  }

  function requireWhere(options, what) {
    if (!options || typeof options.where !== "string" || !options.where.trim()) {
      throw new GoopError(what + " needs a `where`; to change every row, say so (\"1 = 1\")", 400);
    }
  }

  const AGGREGATE = /^(count|sum|total|avg|min|max)\s*\(\s*(\*|(distinct\s+)?([A-Za-z_][A-Za-z0-9_]*))\s*\)(?:\s+(?:as\s+)?([A-Za-z_][A-Za-z0-9_]*))?$/i;

  /** `COUNT(*) AS n, SUM(stars) AS total, …` as [{fn, column, distinct, name}]. */
  function parseAggregates(expression) {
    if (typeof expression !== "string" || !expression.trim()) {
      throw new GoopError("aggregate needs an expression such as \"COUNT(*) AS n\"", 400);
    }
    return expression.split(",").map(function (part) {
      const text = part.trim();
      const found = AGGREGATE.exec(text);
      if (!found) {
        throw new GoopError("aggregate: " + JSON.stringify(text) + " is not FN(column) [AS name] " +
          "with FN one of COUNT, SUM, TOTAL, AVG, MIN, MAX", 400);
      }
      const fn = found[1].toLowerCase();
      if (found[2] === "*" && fn !== "count") {
        throw new GoopError("aggregate: only COUNT takes *", 400);
      }
      return {
        fn: fn,
        column: found[2] === "*" ? null : found[4],
        distinct: Boolean(found[3]),
        name: found[5] || text.replace(/\s+$/, ""),
      };
    });
  }

  /** One aggregate over a group of rows, with SQLite's meaning (NULLs left out). */
  function aggregateOf(item, rows) {
    if (item.column === null) return rows.length;
    let values = rows.map(function (row) { return row[item.column]; })
      .filter(function (value) { return value !== null && value !== undefined; });
    if (item.distinct) values = uniqueValues(values);
    switch (item.fn) {
      case "count": return values.length;
      case "sum": return values.length ? values.reduce(function (a, b) { return a + Number(b); }, 0) : null;
      case "total": return values.reduce(function (a, b) { return a + Number(b); }, 0);
      case "avg": return values.length ? values.reduce(function (a, b) { return a + Number(b); }, 0) / values.length : null;
      case "min": return values.length ? values.reduce(function (a, b) { return b < a ? b : a; }) : null;
      default: return values.length ? values.reduce(function (a, b) { return b > a ? b : a; }) : null;
    }
  }

  function uniqueValues(values) {
    const seen = new Set();
    return values.filter(function (value) {
      const key = JSON.stringify(value);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }

  const data = {
    /** The tables of the site's peer, with their access policies. */
    tables: () => call("tables"),
    /** A table's columns and policies. */
    describe: (table) => call("describe", { table: table }),
    /** Every table's description (describe for each of tables()). */
    schemas: async () => {
      const tables = await call("tables");
      return Promise.all(tables.map(function (t) { return call("describe", { table: t.name }); }));
    },
    /** Rows: options {where, args, columns (or fields), order, limit (≤ 1000, default 100), offset}. */
    find: (table, options) => call("query", queryBody(table, options)),
    /** The original SDK's name of find. */
    query: (table, options) => call("query", queryBody(table, options)),
    /** The first matching row, or null. */
    findOne: (table, options) => call("query-one", queryBody(table, options)),
    /** The row with this _id, or null. */
    get: (table, id) => call("query-one", { table: table, where: "_id = ?", args: [id] }),
    /** The first row whose `column` equals `value`, or null. */
    getBy: async (table, column, value) => call("query-one", {
      table: table, where: checkColumn(column, "getBy") + " = ?", args: [value],
    }),
    /** Up to `limit` rows (default and at most 1000) in _id order. */
    list: (table, limit) => call("query", { table: table, order: "_id", limit: limit || MAX_ROWS }),
    /** One column's values: find's options, limit default and at most 1000. */
    pluck: async (table, column, options) => {
      checkColumn(column, "pluck");
      const o = Object.assign({ limit: MAX_ROWS }, options || {}, { columns: [column], fields: undefined });
      const rows = await call("query", queryBody(table, o));
      return rows.map(function (row) { return row[column]; });
    },
    /** A column's distinct values among at most 1000 matching rows (ordered by `order`, else the column). */
    distinct: async (table, column, options) => {
      checkColumn(column, "distinct");
      const o = Object.assign({}, options || {});
      if (!o.order) o.order = column;
      const rows = await boundedRows(table, o, [column], "distinct");
      return uniqueValues(rows.map(function (row) { return row[column]; }));
    },
    /** Whether any row matches: options {where, args}. */
    exists: async (table, options) => {
      const o = Object.assign({}, options || {}, { columns: ["_id"], fields: undefined });
      return (await call("query-one", queryBody(table, o))) !== null;
    },
    /** How many rows match: options {where, args}. */
    count: (table, options) => call("count", queryBody(table, options)),
    /**
     * COUNT/SUM/TOTAL/AVG/MIN/MAX over the matching rows, optionally per `group_by` column(s):
     * resolves to rows like [{n: 3, total: 12}]. Works on at most 1000 matching rows.
     */
    aggregate: async (table, expression, options) => {
      const items = parseAggregates(expression);
      const o = options || {};
      const groupText = o.group_by || o.groupBy || "";
      const groups = groupText ? groupText.split(",").map(function (c) { return checkColumn(c.trim(), "aggregate group_by"); }) : [];
      if (!groups.length && items.every(function (item) { return item.column === null; })) {
        // Only COUNT(*): the peer counts without a bound.
        const n = await call("count", queryBody(table, o));
        const row = {};
        items.forEach(function (item) { row[item.name] = n; });
        return [row];
      }
      const columns = uniqueValues(groups.concat(items
        .filter(function (item) { return item.column !== null; })
        .map(function (item) { return item.column; })));
      if (!columns.length) columns.push("_id");
      const rows = await boundedRows(table, { where: o.where, args: o.args, order: groups.join(", ") || undefined },
        columns, "aggregate");
      const buckets = new Map();
      if (!groups.length) buckets.set("", rows);
      rows.forEach(function (row) {
        if (!groups.length) return;
        const key = JSON.stringify(groups.map(function (g) { return row[g]; }));
        if (!buckets.has(key)) buckets.set(key, []);
        buckets.get(key).push(row);
      });
      return Array.from(buckets.values()).map(function (bucket) {
        const out = {};
        groups.forEach(function (g) { out[g] = bucket[0][g]; });
        items.forEach(function (item) { out[item.name] = aggregateOf(item, bucket); });
        return out;
      });
    },
    /** Inserts a row; resolves to {_id, id} (the same number; `id` is the original SDK's name). */
    insert: async (table, row) => {
      const made = await call("insert", { table: table, data: row });
      return { _id: made._id, id: made._id };
    },
    /** Changes the row with this _id; resolves to {updated}. */
    update: (table, id, changes) => call("update", { table: table, id: id, data: changes }),
    /** Deletes the row with this _id; resolves to {deleted}. */
    remove: (table, id) => call("delete", { table: table, id: id }),
    /**
     * Applies `changes` to every matching row the caller may change (at most 1000 match), one
     * update per row; resolves to {affected}.
     */
    updateWhere: async (table, changes, options) => {
      requireWhere(options, "updateWhere");
      const rows = await boundedRows(table, Object.assign({}, options, { order: "_id" }), ["_id"], "updateWhere");
      const affected = await eachRow(rows, "updateWhere", async function (id) {
        return (await call("update", { table: table, id: id, data: changes })).updated;
      });
      return { affected: affected };
    },
    /** Deletes every matching row the caller may delete (at most 1000 match); resolves to {affected}. */
    deleteWhere: async (table, options) => {
      requireWhere(options, "deleteWhere");
      const rows = await boundedRows(table, Object.assign({}, options, { order: "_id" }), ["_id"], "deleteWhere");
      const affected = await eachRow(rows, "deleteWhere", async function (id) {
        return (await call("delete", { table: table, id: id })).deleted;
      });
      return { affected: affected };
    },
    /**
     * Updates the row whose `keyColumn` equals row[keyColumn], or inserts `row` when there is
     * none; resolves to {_id, id, inserted}.
     */
    upsert: async (table, keyColumn, row) => {
      checkColumn(keyColumn, "upsert");
      if (!row || row[keyColumn] === undefined) {
        throw new GoopError("upsert: the row has no `" + keyColumn + "`", 400);
      }
      const found = await call("query-one", {
        table: table, where: keyColumn + " = ?", args: [row[keyColumn]], columns: ["_id"],
      });
      if (found) {
        await call("update", { table: table, id: found._id, data: row });
        return { _id: found._id, id: found._id, inserted: false };
      }
      const made = await call("insert", { table: table, data: row });
      return { _id: made._id, id: made._id, inserted: true };
    },
    /** Calls the site's Lua function `name` with `params`. */
    call: (name, params) => call(hostId ? "lua/call" : "lua-call", { function: name, params: params || {} }),
    /** The site's Lua functions. */
    functions: () => call(hostId ? "lua/list" : "lua-list"),
    /** The caller's role, and with a table its permissions there. */
    role: (table) => call("role", table ? { table: table } : {}),
    /**
     * A table's handle: resolves (after describe) to {name, columns, access} and the methods
     * above without their `table` argument.
     */
    orm: async (table) => {
      const info = await call("describe", { table: table });
      const handle = { name: info.name, columns: info.columns, access: info.access };
      TABLE_METHODS.forEach(function (name) {
        handle[name] = function () {
          return data[name].apply(null, [table].concat(Array.prototype.slice.call(arguments)));
        };
      });
      return handle;
    },
  };

  /** The methods an orm handle binds to its table. */
  const TABLE_METHODS = ["query", "find", "findOne", "get", "getBy", "list", "pluck", "distinct",
    "exists", "count", "aggregate", "insert", "update", "remove", "updateWhere", "deleteWhere",
    "upsert", "describe", "role"];

  /** {myId, hostId, isOwner, myLabel}: who is looking (and the label they announce), whose site this is. */
  async function peer() {
    const me = meta("goop-self");
    const host = meta("goop-host") || hostId;
    const label = meta("goop-self-label") || "";
    if (me && host) return { myId: me, hostId: host, isOwner: me === host, myLabel: label };
    const role = await call("role");
    return { myId: role.peerId, hostId: role.hostId, isOwner: role.role === "owner", myLabel: label };
  }

  global.Goop = Object.assign(global.Goop || {}, { data: data, peer: peer, GoopError: GoopError });
})(window);
