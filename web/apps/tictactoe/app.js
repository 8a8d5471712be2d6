// Tic-tac-toe: a lobby of games in the owner's `games` table and live boards. Every action goes
// to the owner's Lua function `game`, which checks whose turn it is and that the cell is free;
// the owner's peer announces each change in the group `tictactoe`, so open pages refresh at once.
(async function () {
  "use strict";
  const status = document.getElementById("status");
  const me = await Goop.peer();
  let current = null;

  function say(text, error) { status.textContent = text || ""; status.className = error ? "error" : ""; }
  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const act = (action, params) => Goop.data.call("game", Object.assign({ action: action }, params || {}));
  const name = (g, side) => (side === "x" ? g.x_name : g.o_name) || (g[side] || "").slice(0, 8);
  const MARK = { x: "✕", o: "◯" };

  async function lobby() {
    document.getElementById("lobby").hidden = false;
    document.getElementById("game").hidden = true;
    current = null;
    const games = await Goop.data.find("games", { order: "_id DESC", limit: 200 });
    const row = (g, button) => {
      const li = el("li");
      li.dataset.game = g._id;
      const text = el("span", "", "#" + g._id + " " + name(g, "x") + (g.o ? " vs " + name(g, "o") : ""));
      if (g.status === "won") text.append(el("span", "muted", " — " + (g.winner === g.x ? name(g, "x") : name(g, "o")) + " won"));
      if (g.status === "draw") text.append(el("span", "muted", " — draw"));
      li.append(text, button);
      return li;
    };
    const open = games.filter((g) => g.status === "open").map((g) => {
      const mine = g.x === me.myId;
      const button = el("button", "", mine ? "Waiting…" : "Join");
      button.dataset.action = mine ? "watch" : "join";
      button.addEventListener("click", async () => {
        try {
          if (!mine) await act("join", { game: g._id, name: me.myLabel });
          location.hash = "#game/" + g._id;
        } catch (e) { say(e.message, true); }
      });
      return row(g, button);
    });
    const watch = (g) => {
      const button = el("button", "", g.x === me.myId || g.o === me.myId ? "Play" : "Watch");
      button.addEventListener("click", () => { location.hash = "#game/" + g._id; });
      return row(g, button);
    };
    document.getElementById("open-games").replaceChildren(...(open.length ? open : [el("li", "muted", "No open game: start one!")]));
    document.getElementById("playing-games").replaceChildren(...games.filter((g) => g.status === "playing").map(watch));
    document.getElementById("finished-games").replaceChildren(...games.filter((g) => g.status === "won" || g.status === "draw").slice(0, 30).map(watch));
  }

  document.getElementById("new-game").addEventListener("click", async () => {
    try {
      const made = await act("create", { name: me.myLabel });
      location.hash = "#game/" + made._id;
    } catch (e) { say(e.message, true); }
  });

  async function showGame(id) {
    document.getElementById("lobby").hidden = true;
    document.getElementById("game").hidden = false;
    const g = await Goop.data.findOne("games", { where: "_id = ?", args: [id] });
    if (!g) { say("There is no game " + id, true); return; }
    current = g;
    const mine = g.x === me.myId ? "x" : g.o === me.myId ? "o" : null;
    const myTurn = g.status === "playing" && mine === g.turn;
    const winning = (g.line || "").split(",").map(Number);
    const cells = [];
    for (let i = 1; i <= 9; i++) {
      const mark = g.board[i - 1];
      const cell = el("button", "cell" + (mark !== "." ? " " + mark : "") + (winning.includes(i) ? " win" : ""), mark === "." ? "" : MARK[mark]);
      cell.dataset.cell = i;
      cell.disabled = !myTurn || mark !== ".";
      cell.addEventListener("click", async () => {
        try { await act("move", { game: g._id, cell: i }); say(""); } catch (e) { say(e.message, true); }
        await showGame(g._id);
      });
      cells.push(cell);
    }
    const board = document.getElementById("board");
    board.replaceChildren(...cells);
    board.dataset.board = g.board;
    document.getElementById("players").textContent = MARK.x + " " + name(g, "x") + "  vs  " + MARK.o + " " + (g.o ? name(g, "o") : "…");
    const state = document.getElementById("game-state");
    state.dataset.status = g.status;
    state.dataset.winner = g.winner;
    state.textContent = g.status === "open" ? "Waiting for an opponent to join from the lobby."
      : g.status === "won" ? (g.winner === me.myId ? "You win!" : (g.winner === g.x ? name(g, "x") : name(g, "o")) + " wins.")
      : g.status === "draw" ? "A draw." : myTurn ? "Your turn." : MARK[g.turn] + " to play.";
  }

  // One route at a time: a slow one that ends late never covers the page of a newer one.
  let routing = Promise.resolve();
  function route() {
    routing = routing.catch(() => {}).then(render);
    return routing;
  }

  async function render() {
    const m = location.hash.match(/^#game\/(\d+)$/);
    try {
      if (m) await showGame(Number(m[1]));
      else await lobby();
    } catch (e) { say(e.message, true); }
    document.body.dataset.ready = "yes";
  }

  window.addEventListener("hashchange", () => { say(""); route(); });
  try {
    await Goop.group.join("tictactoe", (event) => {
      if (event.kind === "msg" && event.payload && event.payload.type === "game") {
        if (!current || current._id === event.payload.game) route();
      }
      if (event.kind === "host_offline") document.getElementById("live").classList.remove("on");
      if (event.kind === "host_online") document.getElementById("live").classList.add("on");
    });
    document.getElementById("live").classList.add("on");
  } catch (e) {
    say("Live updates are off: " + e.message, true);
  }
  await route();
})();
