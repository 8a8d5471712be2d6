--- Tic-tac-toe games played through this peer, which checks every move: create, join, move.
--- @rate_limit 600
-- The caller is the player's authenticated peer ID; a move counts only on the caller's turn and
-- on an empty cell. Three in a row wins; a full board is a draw.

local GROUP = "tictactoe"
local LINES = { { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 }, { 1, 4, 7 }, { 2, 5, 8 }, { 3, 6, 9 }, { 1, 5, 9 }, { 3, 5, 7 } }

local function game_of(id)
  if math.type(id) ~= "integer" then error("give the game's number as `game`") end
  local g = goop.db.query("SELECT * FROM games WHERE _id = ?", id)[1]
  if not g then error("there is no game " .. id) end
  return g
end

local function clean_name(name)
  name = type(name) == "string" and name:gsub("%c", ""):sub(1, 60) or ""
  if name == "" then name = goop.peer.label ~= "" and goop.peer.label or goop.peer.id:sub(1, 8) end
  return name
end

local function announce(id)
  pcall(goop.group.send, GROUP, { type = "game", game = id })
end

call = goop.route({
  create = function(request)
    local me = goop.peer.id
    local open = goop.db.scalar("SELECT COUNT(*) FROM games WHERE x = ? AND status = 'open'", me)
    if open >= 3 then error("you have three open games already; wait for someone to join one") end
    goop.db.exec("INSERT INTO games (_owner, x, x_name, board, turn, status) VALUES (?, ?, ?, '.........', 'x', 'open')",
      me, me, clean_name(request.params.name))
    local id = goop.db.scalar("SELECT _id FROM games WHERE x = ? ORDER BY _id DESC LIMIT 1", me)
    announce(id)
    return game_of(id)
  end,

  join = function(request)
    local g = game_of(request.params.game)
    local me = goop.peer.id
    if g.status ~= "open" then error("this game is not open any more") end
    if g.x == me then error("you cannot play against yourself; wait for someone to join") end
    local changed = goop.db.exec("UPDATE games SET o = ?, o_name = ?, status = 'playing' WHERE _id = ? AND status = 'open'",
      me, clean_name(request.params.name), g._id)
    if changed ~= 1 then error("someone else joined first") end
    announce(g._id)
    return game_of(g._id)
  end,

  move = function(request)
    local g = game_of(request.params.game)
    local me = goop.peer.id
    local cell = request.params.cell
    if g.status ~= "playing" then error("this game is not being played") end
    if me ~= g.x and me ~= g.o then error("you are not playing this game") end
    if me ~= g[g.turn] then error("it is not your turn") end
    if math.type(cell) ~= "integer" or cell < 1 or cell > 9 then error("cell is a number from 1 to 9") end
    if g.board:sub(cell, cell) ~= "." then error("that cell is taken") end
    local board = g.board:sub(1, cell - 1) .. g.turn .. g.board:sub(cell + 1)
    local status, winner, line = "playing", "", ""
    for _, l in ipairs(LINES) do
      local a = board:sub(l[1], l[1])
      if a ~= "." and a == board:sub(l[2], l[2]) and a == board:sub(l[3], l[3]) then
        status, winner, line = "won", me, l[1] .. "," .. l[2] .. "," .. l[3]
      end
    end
    if status == "playing" and not board:find(".", 1, true) then status = "draw" end
    local turn = g.turn == "x" and "o" or "x"
    local ply = goop.db.scalar("SELECT COUNT(*) FROM moves WHERE game = ?", g._id) + 1
    local changed = goop.db.exec("UPDATE games SET board = ?, turn = ?, status = ?, winner = ?, line = ? WHERE _id = ? AND board = ? AND status = 'playing'",
      board, turn, status, winner, line, g._id, g.board)
    if changed ~= 1 then error("the game changed meanwhile; look again") end
    goop.db.exec("INSERT INTO moves (_owner, game, ply, cell, by) VALUES (?, ?, ?, ?, ?)", me, g._id, ply, cell, me)
    announce(g._id)
    return game_of(g._id)
  end,
})
