// The corkboard: notes in the owner's `notes` table, pinned by visitors through their own peer.
// Each note has a category colour and an expiry date; expired notes are no longer shown, and
// the owner can take them down (or any other note).
(async function () {
  "use strict";
  const board = document.getElementById("board");
  const status = document.getElementById("status");
  const form = document.getElementById("pin");
  const me = await Goop.peer();
  const LABELS = { selling: "Selling", looking: "Looking for", offering: "Offering", event: "Event" };
  let filter = "";

  function say(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A stable small tilt per note, so the board looks pinned by hand but does not jump around.
  function tilt(id) {
    return ((id * 37) % 7 - 3) * 0.8;
  }

  function note(row) {
    const card = el("article", "note cat-" + row.category);
    card.dataset.id = row._id;
    card.style.transform = "rotate(" + tilt(row._id) + "deg)";
    card.append(el("div", "kind", LABELS[row.category] || row.category), el("h2", "", row.title));
    if (row.body) card.append(el("p", "", row.body));
    if (row.contact) card.append(el("p", "contact", "☎ " + row.contact));
    const until = new Date(row.expires_at);
    card.append(el("p", "small", "by " + row._owner.slice(0, 8) + "… · until " + until.toLocaleDateString()));
    if (me.isOwner || row._owner === me.myId) {
      const remove = el("button", "", me.isOwner && row._owner !== me.myId ? "take down" : "unpin");
      remove.addEventListener("click", async () => {
        try { await Goop.data.remove("notes", row._id); await refresh(); } catch (e) { say(e.message, true); }
      });
      card.append(remove);
    }
    return card;
  }

  async function refresh() {
    const where = ["julianday(expires_at) > julianday('now')"];
    const args = [];
    if (filter) { where.push("category = ?"); args.push(filter); }
    const rows = await Goop.data.find("notes", { where: where.join(" AND "), args: args, order: "_id DESC", limit: 300 });
    board.replaceChildren(...rows.map(note));
    if (!rows.length) {
      const empty = el("p", "empty", me.isOwner
        ? "Your corkboard is empty. Pin the first note below — neighbours who visit your peer can pin theirs too."
        : "Nothing is pinned here yet. Be the first!");
      board.append(empty);
    }
    if (me.isOwner) {
      const expired = await Goop.data.count("notes", { where: "julianday(expires_at) <= julianday('now')" });
      document.getElementById("owner-tools").hidden = expired === 0;
      document.getElementById("prune").textContent = "Take down " + expired + " expired note" + (expired === 1 ? "" : "s");
    }
  }

  document.getElementById("filters").addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    filter = button.dataset.filter;
    document.querySelectorAll("#filters button").forEach((b) => b.classList.toggle("on", b === button));
    await refresh();
  });

  document.getElementById("prune").addEventListener("click", async () => {
    const gone = await Goop.data.deleteWhere("notes", { where: "julianday(expires_at) <= julianday('now')" });
    say(gone.affected + " expired note(s) taken down.");
    await refresh();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = new FormData(form);
    const days = Number(values.get("days")) || 30;
    try {
      await Goop.data.insert("notes", {
        title: String(values.get("title")).trim(),
        body: String(values.get("body")).trim(),
        category: values.get("category"),
        contact: String(values.get("contact")).trim(),
        expires_at: new Date(Date.now() + days * 86400000).toISOString(),
      });
      form.reset();
      say("Pinned!");
      await refresh();
    } catch (e) {
      say(e.message, true);
    }
  });

  try { await refresh(); } catch (e) { say(e.message, true); }
  document.body.dataset.ready = "yes";
})();
