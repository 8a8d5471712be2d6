// The wiki: the current text of each page in `pages` (anyone may edit), every version in
// `revisions` with its editor's peer ID. Pages link with [[Name]]; a link to a page that does not
// exist yet opens its editor.
(async function () {
  "use strict";
  const view = document.getElementById("view");
  const status = document.getElementById("status");
  const me = await Goop.peer();
  let names = new Set();

  function say(text, error) { status.textContent = text || ""; status.className = error ? "error" : ""; }
  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const link = (name, action) => "#/" + (action || "page") + "/" + encodeURIComponent(name);

  async function index() {
    const pages = await Goop.data.find("pages", { columns: ["name"], order: "name", limit: 1000 });
    names = new Set(pages.map((p) => p.name));
    document.getElementById("index").replaceChildren(...pages.map((p) => {
      const a = el("a", "", p.name);
      a.href = link(p.name);
      const li = el("li");
      li.append(a);
      return li;
    }));
  }

  function tabs(name, current) {
    const bar = el("div", "tabs");
    [["page", "Read"], ["edit", "Edit"], ["history", "History"]].forEach(([action, label]) => {
      const a = el("a", action === current ? "on" : "", label);
      a.href = link(name, action);
      bar.append(a);
    });
    return bar;
  }

  async function page(name) {
    const found = await Goop.data.findOne("pages", { where: "name = ?", args: [name] });
    if (!found) { await edit(name); return; }
    const prose = el("div", "prose");
    prose.append(Goop.markdown.render(found.body, { wikiLink: (target) => link(target) }));
    prose.querySelectorAll("a.wiki-link").forEach((a) => {
      const target = decodeURIComponent(a.getAttribute("href").replace(/^#\/page\//, ""));
      if (!names.has(target)) { a.classList.add("missing"); a.title = "not written yet"; }
    });
    const updated = el("p", "muted", "Last edited " + new Date(found._updated_at).toLocaleString());
    view.replaceChildren(el("h1", "page-title", found.name), tabs(name, "page"), prose, updated);
  }

  async function edit(name) {
    const found = await Goop.data.findOne("pages", { where: "name = ?", args: [name] });
    const form = el("form", "edit");
    form.id = "edit-form";
    const text = el("textarea");
    text.name = "body";
    text.value = found ? found.body : "";
    text.maxLength = 100000;
    const summary = el("input");
    summary.name = "summary";
    summary.placeholder = "What did you change?";
    summary.maxLength = 200;
    const save = el("button", "", found ? "Save changes" : "Create page");
    save.type = "submit";
    form.append(text, summary, save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        if (found) await Goop.data.update("pages", found._id, { body: text.value });
        else await Goop.data.insert("pages", { name: name, body: text.value });
        await Goop.data.insert("revisions", { page: name, body: text.value, summary: summary.value.trim(), author: me.myLabel || "" });
        await index();
        if (location.hash === link(name)) await route();
        else location.hash = link(name);
        say("Saved.");
      } catch (e) {
        say(/UNIQUE/.test(e.message) ? "Someone created this page meanwhile; reload it." : e.message, true);
      }
    });
    view.replaceChildren(el("h1", "page-title", (found ? "Editing " : "Creating ") + name), tabs(name, "edit"), form);
  }

  async function history(name) {
    const rows = await Goop.data.find("revisions", { where: "page = ?", args: [name], order: "_id DESC", limit: 500 });
    const table = el("table", "history");
    table.id = "history";
    const head = el("tr");
    ["When", "Who", "Summary", ""].forEach((h) => head.append(el("th", "", h)));
    table.append(head);
    rows.forEach((r) => {
      const tr = el("tr");
      tr.dataset.owner = r._owner;
      const show = el("a", "", "view");
      show.href = "#/revision/" + r._id;
      tr.append(el("td", "", new Date(r._created_at).toLocaleString()),
        el("td", "", (r.author ? r.author + " " : "") + "(" + r._owner.slice(0, 8) + "…)"),
        el("td", "", r.summary || "—"), el("td"));
      tr.lastChild.append(show);
      table.append(tr);
    });
    view.replaceChildren(el("h1", "page-title", "History of " + name), tabs(name, "history"), table);
  }

  async function revision(id) {
    const r = await Goop.data.findOne("revisions", { where: "_id = ?", args: [id] });
    if (!r) { view.replaceChildren(el("p", "", "No such revision.")); return; }
    view.replaceChildren(el("h1", "page-title", r.page + " as of " + new Date(r._created_at).toLocaleString()),
      tabs(r.page, "history"), el("pre", "old", r.body));
  }

  // One route at a time: a slow one that ends late never covers the page of a newer one.
  let routing = Promise.resolve();
  function route() {
    routing = routing.catch(() => {}).then(render);
    return routing;
  }

  async function render() {
    say("");
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    const name = parts[1] ? decodeURIComponent(parts.slice(1).join("/")) : "Home";
    try {
      await index();
      if (parts[0] === "edit") await edit(name);
      else if (parts[0] === "history") await history(name);
      else if (parts[0] === "revision") await revision(Number(parts[1]));
      else await page(name);
    } catch (e) { say(e.message, true); }
    document.body.dataset.ready = "yes";
    document.body.dataset.route = parts[0] || "page";
  }

  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = event.target.elements.q.value.trim();
    if (q) location.hash = link(q);
  });
  window.addEventListener("hashchange", route);
  await route();
})();
