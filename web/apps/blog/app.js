// The blog: published posts in `posts` (anyone reads), the owner's drafts in `drafts` (the owner
// only), and visitors' comments in `comments`, each stamped with its writer's peer ID. The same
// page is the owner's editor and a visitor's reader; markdown is rendered into DOM nodes by
// goop-markdown.js, never as HTML.
(async function () {
  "use strict";
  const view = document.getElementById("view");
  const status = document.getElementById("status");
  const me = await Goop.peer();
  document.getElementById("owner-nav").hidden = !me.isOwner;

  function say(text, error) {
    status.textContent = text || "";
    status.className = error ? "error" : "";
  }

  function el(name, attrs, children) {
    const node = document.createElement(name);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    });
    (children || []).forEach((child) => node.append(child));
    return node;
  }

  function tagsOf(text) {
    return String(text || "").split(",").map((t) => t.trim()).filter(Boolean);
  }

  function tagLinks(text) {
    return tagsOf(text).map((tag) => el("a", { className: "tag", href: "#/tag/" + encodeURIComponent(tag), text: tag }));
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" });
  }

  function summary(body) {
    const text = Goop.markdown.plainText(body);
    return text.length > 280 ? text.slice(0, 280).trimEnd() + "…" : text;
  }

  async function list(tag) {
    const options = { order: "published_at DESC, _id DESC", limit: 100 };
    // Tags are kept as "a, b, c".
    if (tag) { options.where = "(', ' || tags || ',') LIKE ?"; options.args = ["%, " + tag + ",%"]; }
    const posts = await Goop.data.find("posts", options);
    const items = posts.map((post) => el("article", { className: "post", "data-id": post._id }, [
      el("h2", {}, [el("a", { href: "#/post/" + post._id, text: post.title })]),
      el("div", { className: "meta" }, [when(post.published_at), " ", ...tagLinks(post.tags)]),
      el("p", { text: summary(post.body) }),
    ]));
    const heading = tag ? [el("h1", { text: "Posts tagged “" + tag + "”" })] : [];
    if (!posts.length) {
      items.push(el("div", { className: "empty" }, me.isOwner
        ? [el("p", { text: "Your blog has no post yet." }), el("p", {}, [el("a", { href: "#/new", text: "Write the first one" })])]
        : [el("p", { text: tag ? "No post has this tag." : "Nothing has been published here yet." })]));
    }
    view.replaceChildren(...heading, ...items);
    const all = await Goop.data.find("posts", { columns: ["tags"], limit: 1000 });
    const tags = [...new Set(all.flatMap((p) => tagsOf(p.tags)))].sort();
    document.getElementById("tag-list").replaceChildren(...tags.map((t) => el("a", { className: "tag", href: "#/tag/" + encodeURIComponent(t), text: t })));
  }

  async function showPost(id) {
    const post = await Goop.data.findOne("posts", { where: "_id = ?", args: [id] });
    if (!post) { view.replaceChildren(el("p", { className: "empty", text: "This post is gone." })); return; }
    const body = el("div", { className: "prose" }, [Goop.markdown.render(post.body)]);
    const tools = [];
    if (me.isOwner) {
      tools.push(el("a", { href: "#/edit/" + post._id, text: "Edit" }), " ");
      const remove = el("button", { className: "link", text: "Delete post" });
      remove.addEventListener("click", async () => {
        if (!confirm("Delete this post and its comments?")) return;
        const comments = await Goop.data.find("comments", { where: "post_id = ?", args: [post._id], columns: ["_id"], limit: 1000 });
        for (const c of comments) await Goop.data.remove("comments", c._id);
        await Goop.data.remove("posts", post._id);
        location.hash = "#/";
      });
      tools.push(remove);
    }
    const comments = el("section", { className: "comments", id: "comments" });
    view.replaceChildren(el("article", { className: "post", "data-id": post._id }, [
      el("h2", { text: post.title }),
      el("div", { className: "meta" }, [when(post.published_at), " ", ...tagLinks(post.tags), " ", ...tools]),
      body,
    ]), comments);
    await showComments(post._id, comments);
  }

  async function showComments(postId, holder) {
    const rows = await Goop.data.find("comments", { where: "post_id = ?", args: [postId], order: "_id", limit: 500 });
    const items = rows.map((c) => {
      const who = el("div", { className: "who" }, [
        el("strong", { text: c.name }), " ",
        el("span", { className: "badge", title: "Verified peer ID " + c._owner, text: "✔ " + c._owner.slice(0, 8) + "…" }), " ",
        when(c._created_at),
      ]);
      const item = el("div", { className: "comment", "data-id": c._id, "data-owner": c._owner }, [who, el("p", { text: c.body })]);
      if (me.isOwner || c._owner === me.myId) {
        const remove = el("button", { className: "link", text: me.isOwner && c._owner !== me.myId ? "Remove (moderate)" : "Remove" });
        remove.addEventListener("click", async () => {
          try { await Goop.data.remove("comments", c._id); await showComments(postId, holder); } catch (e) { say(e.message, true); }
        });
        item.append(remove);
      }
      return item;
    });
    const form = el("form", { id: "comment-form" }, [
      el("label", {}, ["Name ", el("input", { name: "name", maxLength: 60, required: true, value: me.myLabel || "" })]),
      el("label", {}, ["Comment ", el("textarea", { name: "body", rows: 3, maxLength: 2000, required: true })]),
      el("div", { className: "actions" }, [el("button", { type: "submit", text: "Comment" })]),
    ]);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = new FormData(form);
      try {
        await Goop.data.insert("comments", { post_id: postId, name: String(values.get("name")).trim(), body: String(values.get("body")).trim() });
        say("Your comment is on the owner's peer, signed with your peer ID.");
        await showComments(postId, holder);
      } catch (e) { say(e.message, true); }
    });
    holder.replaceChildren(el("h3", { text: rows.length ? rows.length + " comment" + (rows.length === 1 ? "" : "s") : "No comments yet" }), ...items, form);
  }

  function editor(values, onPublish, onDraft) {
    const form = document.getElementById("editor-template").content.firstElementChild.cloneNode(true);
    ["title", "tags", "body"].forEach((name) => { form.elements[name].value = values[name] || ""; });
    const preview = form.querySelector(".preview .prose");
    const update = () => preview.replaceChildren(Goop.markdown.render(form.elements.body.value));
    form.elements.body.addEventListener("input", update);
    update();
    const read = () => ({ title: form.elements.title.value.trim(), tags: tagsOf(form.elements.tags.value).join(", "), body: form.elements.body.value });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await onPublish(read()); } catch (e) { say(e.message, true); }
    });
    form.querySelector("[data-action=draft]").addEventListener("click", async () => {
      try { await onDraft(read()); } catch (e) { say(e.message, true); }
    });
    view.replaceChildren(form);
  }

  async function newPost(draftId) {
    const draft = draftId ? await Goop.data.findOne("drafts", { where: "_id = ?", args: [draftId] }) : null;
    editor(draft || {}, async (post) => {
      const made = await Goop.data.insert("posts", post);
      if (draft) await Goop.data.remove("drafts", draft._id);
      say("Published.");
      location.hash = "#/post/" + made._id;
    }, async (values) => {
      if (draft) await Goop.data.update("drafts", draft._id, values);
      else await Goop.data.insert("drafts", values);
      say("Draft saved; only you can see it.");
      location.hash = "#/drafts";
    });
  }

  async function editPost(id) {
    const post = await Goop.data.findOne("posts", { where: "_id = ?", args: [id] });
    editor(post || {}, async (values) => {
      await Goop.data.update("posts", id, values);
      say("Saved.");
      location.hash = "#/post/" + id;
    }, async (values) => {
      await Goop.data.insert("drafts", values);
      await Goop.data.remove("posts", id);
      say("Moved back to the drafts.");
      location.hash = "#/drafts";
    });
  }

  async function drafts() {
    const rows = await Goop.data.find("drafts", { order: "_updated_at DESC", limit: 200 });
    view.replaceChildren(el("h1", { text: "Drafts" }), ...(rows.length ? rows.map((d) => el("article", { className: "post draft", "data-id": d._id }, [
      el("h2", {}, [el("a", { href: "#/new/" + d._id, text: d.title || "(untitled)" })]),
      el("p", { text: summary(d.body) }),
    ])) : [el("p", { className: "empty", text: "No drafts." })]));
  }

  // One route at a time: a slow one that ends late never covers the page of a newer one.
  let routing = Promise.resolve();
  function route() {
    routing = routing.catch(() => {}).then(render);
    return routing;
  }

  async function render() {
    say("");
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    try {
      if (parts[0] === "post" && parts[1]) await showPost(Number(parts[1]));
      else if (parts[0] === "tag" && parts[1]) await list(parts[1]);
      else if (parts[0] === "new" && me.isOwner) await newPost(parts[1] ? Number(parts[1]) : null);
      else if (parts[0] === "edit" && me.isOwner) await editPost(Number(parts[1]));
      else if (parts[0] === "drafts" && me.isOwner) await drafts();
      else await list(null);
    } catch (e) {
      say(e.message, true);
    }
    document.body.dataset.ready = "yes";
    document.body.dataset.route = parts[0] || "list";
  }

  window.addEventListener("hashchange", route);
  await route();
})();
