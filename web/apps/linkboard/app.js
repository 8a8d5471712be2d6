// The link board: links in `links`, votes in `votes` (one row per peer and link, kept unique by
// the table, each "up" or "down"), ranked by score then age. Everyone votes through their own peer.
(async function () {
  "use strict";
  const list = document.getElementById("links");
  const status = document.getElementById("status");
  const form = document.getElementById("submit");
  const me = await Goop.peer();
  let tag = "";

  function say(text, error) { status.textContent = text; status.className = error ? "error" : ""; }
  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function hostOf(url) { try { return new URL(url).host; } catch (_) { return ""; } }
  function safeUrl(url) { return /^https?:\/\//i.test(url) ? url : null; }

  async function vote(link, value, mine) {
    try {
      if (mine && mine.value === value) await Goop.data.remove("votes", mine._id);
      else if (mine) await Goop.data.update("votes", mine._id, { value: value });
      else await Goop.data.insert("votes", { link_id: link._id, value: value });
      await refresh();
    } catch (e) { say(e.message, true); }
  }

  function row(link, score, mine) {
    const li = el("li", "link");
    li.dataset.id = link._id;
    li.dataset.score = score;
    const votes = el("div", "votes");
    const up = el("button", mine && mine.value === "up" ? "on" : "", "▲");
    up.title = "vote up";
    up.dataset.vote = "up";
    up.addEventListener("click", () => vote(link, "up", mine));
    const down = el("button", mine && mine.value === "down" ? "on" : "", "▼");
    down.title = "vote down";
    down.dataset.vote = "down";
    down.addEventListener("click", () => vote(link, "down", mine));
    votes.append(up, el("span", "score", String(score)), down);
    const body = el("div");
    const title = el("div", "title");
    const href = safeUrl(link.url);
    const a = el(href ? "a" : "span", "", link.title);
    if (href) { a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer nofollow"; }
    title.append(a, " ", el("span", "host", "(" + hostOf(link.url) + ")"));
    body.append(title);
    if (link.description) body.append(el("p", "desc", link.description));
    const sub = el("div", "sub");
    String(link.tags || "").split(",").map((t) => t.trim()).filter(Boolean).forEach((t) => {
      const tagLink = el("a", "tag", t);
      tagLink.href = "#tag/" + encodeURIComponent(t);
      sub.append(tagLink);
    });
    sub.append("by " + link._owner.slice(0, 8) + "… · " + new Date(link._created_at).toLocaleDateString());
    if (me.isOwner || link._owner === me.myId) {
      const remove = el("button", "link-button", me.isOwner && link._owner !== me.myId ? "remove (moderate)" : "remove");
      remove.addEventListener("click", async () => {
        try {
          await Goop.data.deleteWhere("votes", { where: "link_id = ?", args: [link._id] }).catch(() => null);
          await Goop.data.remove("links", link._id);
          await refresh();
        } catch (e) { say(e.message, true); }
      });
      sub.append(" · ", remove);
    }
    body.append(sub);
    li.append(votes, body);
    return li;
  }

  async function refresh() {
    const options = { order: "_id DESC", limit: 500 };
    if (tag) { options.where = "(', ' || tags || ',') LIKE ?"; options.args = ["%, " + tag + ",%"]; }
    const [links, votes] = await Promise.all([
      Goop.data.find("links", options),
      Goop.data.find("votes", { columns: ["_id", "_owner", "link_id", "value"], limit: 1000, order: "_id DESC" }),
    ]);
    const scores = new Map();
    const mine = new Map();
    votes.forEach((v) => {
      scores.set(v.link_id, (scores.get(v.link_id) || 0) + (v.value === "up" ? 1 : -1));
      if (v._owner === me.myId) mine.set(v.link_id, v);
    });
    links.sort((a, b) => (scores.get(b._id) || 0) - (scores.get(a._id) || 0) || b._id - a._id);
    list.replaceChildren(...links.map((l) => row(l, scores.get(l._id) || 0, mine.get(l._id))));
    const empty = document.getElementById("empty");
    empty.hidden = links.length > 0;
    empty.textContent = me.isOwner
      ? "No links yet. Submit the first one; visitors of your peer can add theirs and vote."
      : "No links yet. Submit the first one!";
    document.getElementById("filter").hidden = !tag;
    document.getElementById("filter-tag").textContent = tag;
  }

  function readHash() {
    const m = location.hash.match(/^#tag\/(.+)$/);
    tag = m ? decodeURIComponent(m[1]) : "";
  }
  // One tag at a time: a slow list that ends late never covers a newer one.
  let switching = Promise.resolve();
  window.addEventListener("hashchange", () => {
    switching = switching.catch(() => {}).then(async () => { readHash(); await refresh(); });
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = new FormData(form);
    const url = String(values.get("url")).trim();
    if (!safeUrl(url)) { say("Links start with http:// or https://", true); return; }
    try {
      const tags = String(values.get("tags")).split(",").map((t) => t.trim()).filter(Boolean).join(", ");
      await Goop.data.insert("links", { url: url, title: String(values.get("title")).trim(), tags: tags, description: String(values.get("description")).trim() });
      form.reset();
      say("Submitted.");
      await refresh();
    } catch (e) {
      say(/UNIQUE/.test(e.message) ? "That link is on the board already." : e.message, true);
    }
  });

  readHash();
  try { await refresh(); } catch (e) { say(e.message, true); }
  document.body.dataset.ready = "yes";
})();
