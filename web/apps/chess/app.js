// Chess: a lobby of games in the owner's `games` table and live boards. Every action goes to the
// owner's Lua function `game`, which checks whose turn it is and whether the move is legal; the
// owner's peer announces each change in the group `chess`, so every open page refreshes at once.
(async function () {
  "use strict";
  const PIECES = { k: "♚", q: "♛", r: "♜", b: "♝", n: "♞", p: "♟" };
  const status = document.getElementById("status");
  const me = await Goop.peer();
  let current = null; // the game shown
  let legal = [];
  let selected = null;

  function say(text, error) { status.textContent = text || ""; status.className = error ? "error" : ""; }
  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const act = (action, params) => Goop.data.call("game", Object.assign({ action: action }, params || {}));
  const short = (id) => id ? id.slice(0, 8) + "…" : "";
  const nameOf = (g, side) => (side === "w" ? g.white_name : g.black_name) || short(side === "w" ? g.white : g.black);

  // ---- Lobby -------------------------------------------------------------------------------
  async function lobby() {
    document.getElementById("lobby").hidden = false;
    document.getElementById("game").hidden = true;
    current = null;
    const games = await Goop.data.find("games", { order: "_id DESC", limit: 200 });
    const row = (g, button) => {
      const li = el("li");
      li.dataset.game = g._id;
      const text = el("span", "", "#" + g._id + " " + nameOf(g, "w") + (g.black ? " vs " + nameOf(g, "b") : ""));
      const note = el("span", "muted", g.status === "won" ? " — " + g.result + ", " + (g.winner === g.white ? nameOf(g, "w") : nameOf(g, "b")) + " won"
        : g.status === "draw" ? " — draw by " + g.result : "");
      text.append(note);
      li.append(text, button);
      return li;
    };
    const open = games.filter((g) => g.status === "open").map((g) => {
      const mine = g.white === me.myId;
      const button = el("button", mine ? "quiet" : "", mine ? "Waiting…" : "Join");
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
      const button = el("button", "quiet", g.white === me.myId || g.black === me.myId ? "Play" : "Watch");
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
      location.hash = "#game/" + made.game;
    } catch (e) { say(e.message, true); }
  });

  // ---- A game ------------------------------------------------------------------------------
  function parseFen(fen) {
    const [placement, side] = fen.split(" ");
    const board = {};
    placement.split("/").forEach((row, i) => {
      let file = 0;
      for (const c of row) {
        if (/\d/.test(c)) file += Number(c);
        else { board["abcdefgh"[file] + (8 - i)] = c; file++; }
      }
    });
    return { board: board, side: side };
  }

  async function showGame(id) {
    document.getElementById("lobby").hidden = true;
    document.getElementById("game").hidden = false;
    const g = await Goop.data.findOne("games", { where: "_id = ?", args: [id] });
    if (!g) { say("There is no game " + id, true); return; }
    current = g;
    selected = null;
    const pos = parseFen(g.state);
    const mySide = g.white === me.myId ? "w" : g.black === me.myId ? "b" : null;
    legal = g.status === "playing" && mySide === pos.side ? (await act("legal", { game: g._id })).moves || [] : [];
    const moves = await Goop.data.find("moves", { where: "game = ?", args: [g._id], order: "ply", limit: 1000 });
    const last = moves.length ? moves[moves.length - 1].move : null;
    const flipped = mySide === "b";
    const boardNode = document.getElementById("board");
    const squares = [];
    for (let r = 0; r < 8; r++) {
      for (let f = 0; f < 8; f++) {
        const file = flipped ? 7 - f : f;
        const rank = flipped ? r + 1 : 8 - r;
        const name = "abcdefgh"[file] + rank;
        const square = el("div", "square " + ((file + rank) % 2 === 0 ? "light" : "dark"));
        square.dataset.square = name;
        const piece = pos.board[name];
        if (piece) {
          const side = piece === piece.toUpperCase() ? "w" : "b";
          square.append(el("span", "piece " + side, PIECES[piece.toLowerCase()]));
          square.dataset.piece = piece;
          if (piece.toLowerCase() === "k" && side === pos.side && g.status === "playing" && inCheck(g)) square.classList.add("check");
        }
        if (last && (last.slice(0, 2) === name || last.slice(2, 4) === name)) square.classList.add("last");
        square.addEventListener("click", () => click(name));
        squares.push(square);
      }
    }
    boardNode.replaceChildren(...squares);
    boardNode.dataset.fen = g.state;
    const turn = (side) => g.status === "playing" && pos.side === side ? "turn" : "";
    // The player at the bottom is the one whose side faces the viewer.
    const white = document.getElementById(flipped ? "black-player" : "white-player");
    const black = document.getElementById(flipped ? "white-player" : "black-player");
    white.textContent = "♔ " + nameOf(g, "w");
    white.className = turn("w");
    black.textContent = "♚ " + (g.black ? nameOf(g, "b") : "waiting for an opponent…");
    black.className = turn("b");
    const stateNode = document.getElementById("game-state");
    stateNode.dataset.status = g.status;
    stateNode.dataset.result = g.result;
    stateNode.dataset.winner = g.winner;
    stateNode.textContent = g.status === "open" ? "Waiting for an opponent to join from the lobby."
      : g.status === "won" ? (g.result === "checkmate" ? "Checkmate! " : "By " + g.result + ": ") + (g.winner === g.white ? nameOf(g, "w") : nameOf(g, "b")) + " wins."
      : g.status === "draw" ? "Draw by " + g.result + "."
      : mySide === pos.side ? "Your move." + (inCheck(g) ? " Check!" : "") : (pos.side === "w" ? "White" : "Black") + " to move.";
    document.getElementById("resign").hidden = !(mySide && g.status === "playing");
    document.querySelector(".game-tools label").hidden = !(mySide && g.status === "playing");
    document.getElementById("move-list").replaceChildren(...moves.map((m) => el("li", "", m.move)));
  }

  function inCheck(g) { return g.in_check === 1; }

  async function click(name) {
    if (!current || !legal.length) return;
    if (selected && legal.some((m) => m.slice(0, 2) === selected && m.slice(2, 4) === name)) {
      const promo = legal.some((m) => m.slice(0, 4) === selected + name && m.length === 5) ? document.getElementById("promotion").value : "";
      const move = selected + name + promo;
      selected = null;
      try {
        await act("move", { game: current._id, move: move });
        say("");
      } catch (e) { say(e.message, true); }
      await showGame(current._id);
      return;
    }
    const from = legal.filter((m) => m.slice(0, 2) === name);
    document.querySelectorAll(".square").forEach((s) => s.classList.remove("selected", "target"));
    if (!from.length) { selected = null; return; }
    selected = name;
    document.querySelector(`[data-square=${name}]`).classList.add("selected");
    from.forEach((m) => document.querySelector(`[data-square=${m.slice(2, 4)}]`).classList.add("target"));
  }

  document.getElementById("resign").addEventListener("click", async () => {
    if (!current || !confirm("Resign this game?")) return;
    try { await act("resign", { game: current._id }); } catch (e) { say(e.message, true); }
    await showGame(current._id);
  });

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
    await Goop.group.join("chess", (event) => {
      if (event.kind === "msg" && event.payload && event.payload.type === "game") {
        if (!current || current._id === event.payload.game) route();
        else if (!current) lobby();
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
