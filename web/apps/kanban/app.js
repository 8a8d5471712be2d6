// The kanban board: cards in the owner's `cards` table, readable and writable only by members of
// the group `kanban` (the `group` policy; members edit, viewers read — the owner gives roles on
// the Groups page). Every change is announced in the group, so every open board refreshes live.
(async function () {
  "use strict";
  const GROUP = "kanban";
  const LANES = ["todo", "doing", "done"];
  const status = document.getElementById("status");
  const board = document.getElementById("board");
  const me = await Goop.peer();
  let role = null;

  function say(text, error) { status.textContent = text || ""; status.className = error ? "error" : ""; }
  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function announce() {
    try { await Goop.group.send({ type: "changed" }, GROUP); } catch (_) { /* others refresh on their next look */ }
  }

  async function change(work) {
    try {
      await work();
      await refresh();
      await announce();
    } catch (e) {
      say(e.status === 403 ? "Only members may change the board; ask the owner for the member role." : e.message, true);
    }
  }

  function move(card, lane) {
    return change(() => Goop.data.update("cards", card._id, { lane: lane, position: Date.now() / 1000 }));
  }

  function cardNode(card) {
    const li = el("li", "card");
    li.dataset.id = card._id;
    li.draggable = role !== "viewer";
    li.append(el("div", "title", card.title));
    if (card.notes) li.append(el("div", "notes", card.notes));
    const tools = el("div", "tools");
    const index = LANES.indexOf(card.lane);
    if (index > 0) {
      const left = el("button", "", "◀");
      left.dataset.move = LANES[index - 1];
      left.addEventListener("click", () => move(card, LANES[index - 1]));
      tools.append(left);
    }
    if (index < LANES.length - 1) {
      const right = el("button", "", "▶");
      right.dataset.move = LANES[index + 1];
      right.addEventListener("click", () => move(card, LANES[index + 1]));
      tools.append(right);
    }
    const remove = el("button", "", "✕");
    remove.title = "delete";
    remove.addEventListener("click", () => change(() => Goop.data.remove("cards", card._id)));
    tools.append(remove);
    li.append(tools);
    li.addEventListener("dragstart", (event) => event.dataTransfer.setData("text/plain", String(card._id)));
    return li;
  }

  let cards = [];
  async function refresh() {
    cards = await Goop.data.find("cards", { order: "position, _id", limit: 1000 });
    for (const lane of LANES) {
      board.querySelector(`[data-lane=${lane}] ol`).replaceChildren(...cards.filter((c) => c.lane === lane).map(cardNode));
    }
    board.dataset.cards = String(cards.length);
  }

  board.querySelectorAll(".lane").forEach((laneNode) => {
    laneNode.addEventListener("dragover", (event) => { event.preventDefault(); laneNode.classList.add("over"); });
    laneNode.addEventListener("dragleave", () => laneNode.classList.remove("over"));
    laneNode.addEventListener("drop", (event) => {
      event.preventDefault();
      laneNode.classList.remove("over");
      const card = cards.find((c) => String(c._id) === event.dataTransfer.getData("text/plain"));
      if (card && card.lane !== laneNode.dataset.lane) move(card, laneNode.dataset.lane);
    });
  });

  document.getElementById("add-card").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = event.target.elements.title;
    const title = input.value.trim();
    input.value = "";
    change(() => Goop.data.insert("cards", { title: title, lane: "todo", position: Date.now() / 1000 }));
  });

  async function enter() {
    const welcome = await Goop.group.join(GROUP, (event) => {
      if (event.kind === "msg" && event.payload && event.payload.type === "changed") refresh().catch(() => null);
      if (event.kind === "welcome") document.getElementById("live").classList.add("on");
      if (event.kind === "host_offline") document.getElementById("live").classList.remove("on");
      if (event.kind === "host_online") { document.getElementById("live").classList.add("on"); refresh().catch(() => null); }
    });
    role = me.isOwner ? "owner" : welcome.role;
    document.getElementById("live").classList.add("on");
    document.getElementById("who").textContent = me.isOwner ? "You own this board" : "You are a " + role;
    document.body.classList.toggle("viewer", role === "viewer");
    document.body.dataset.role = role;
    await refresh();
    document.getElementById("join").hidden = true;
    board.hidden = false;
  }

  const joined = me.isOwner || (await Goop.group.subscriptions().catch(() => [])).some((g) => g.id === GROUP);
  if (joined) {
    try { await enter(); } catch (e) { say(e.message, true); }
  } else {
    document.getElementById("join").hidden = false;
    document.getElementById("join-button").addEventListener("click", async () => {
      try { await enter(); } catch (e) { say(e.message, true); }
    });
  }
  document.body.dataset.ready = "yes";
})();
