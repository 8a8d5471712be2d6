// The guestbook: entries in the owner's `entries` table, written by visitors through their
// own peer, so each one's `_owner` is the signer's verified peer ID.
(async function () {
  "use strict";
  const list = document.getElementById("entries");
  const status = document.getElementById("status");
  const form = document.getElementById("sign");
  const me = await Goop.peer();
  if (me.myLabel) form.elements.name.value = me.myLabel;

  function say(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleString();
  }

  function entry(row) {
    const li = document.createElement("li");
    li.className = "entry";
    li.dataset.id = row._id;
    li.dataset.owner = row._owner;
    const who = document.createElement("div");
    who.className = "who";
    const name = document.createElement("strong");
    name.textContent = row.name;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.title = "Verified peer ID " + row._owner;
    badge.textContent = "✔ " + row._owner.slice(0, 8) + "…" + row._owner.slice(-4);
    const time = document.createElement("time");
    time.textContent = when(row._created_at);
    who.append(name, badge, time);
    const message = document.createElement("p");
    message.textContent = row.message;
    li.append(who, message);
    if (me.isOwner || row._owner === me.myId) {
      const remove = document.createElement("button");
      remove.className = "link";
      remove.textContent = me.isOwner && row._owner !== me.myId ? "Remove (moderate)" : "Remove";
      remove.addEventListener("click", async () => {
        try {
          await Goop.data.remove("entries", row._id);
          await refresh();
        } catch (error) {
          say(error.message, true);
        }
      });
      li.append(remove);
    }
    return li;
  }

  async function refresh() {
    const rows = await Goop.data.find("entries", { order: "_id DESC", limit: 200 });
    list.replaceChildren(...rows.map(entry));
    document.getElementById("empty").hidden = rows.length > 0;
    document.getElementById("empty-owner").hidden = !me.isOwner;
    document.getElementById("empty-visitor").hidden = me.isOwner;
    document.getElementById("address").textContent = "/p/" + me.hostId + "/";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = new FormData(form);
    try {
      await Goop.data.insert("entries", {
        name: String(values.get("name")).trim(),
        message: String(values.get("message")).trim(),
      });
      form.elements.message.value = "";
      say("Thank you for signing!");
      await refresh();
    } catch (error) {
      say(error.message, true);
    }
  });

  try {
    await refresh();
  } catch (error) {
    say(error.message, true);
  }
  document.body.dataset.ready = "yes";
})();
