--- Chess games played through this peer, which checks every move: create, join, move, resign, legal.
--- @rate_limit 600
-- The host is the referee: players call these actions through their own peer, so the caller is
-- their authenticated peer ID; a move is applied only if it is that player's turn and the move
-- is legal (check, castling, en passant and promotion included). The end — checkmate,
-- stalemate, the fifty-move rule, two bare kings — is found here too. Positions are FEN.

local START = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1"
local GROUP = "chess"
local FILES = "abcdefgh"

-- Squares are 1..64: a1 = 1, h1 = 8, a8 = 57.
local function sq(file, rank) return (rank - 1) * 8 + file end
local function file_of(s) return (s - 1) % 8 + 1 end
local function rank_of(s) return (s - 1) // 8 + 1 end
local function name_of(s) return FILES:sub(file_of(s), file_of(s)) .. rank_of(s) end
local function parse_square(text)
  if type(text) ~= "string" or #text ~= 2 then return nil end
  local f = FILES:find(text:sub(1, 1), 1, true)
  local r = tonumber(text:sub(2, 2))
  if not f or not r or r < 1 or r > 8 then return nil end
  return sq(f, r)
end

local function color(piece)
  if piece == nil or piece == "." then return nil end
  if piece:match("%u") then return "w" end
  return "b"
end
local function other(side) return side == "w" and "b" or "w" end

local function parse_fen(fen)
  local placement, side, castling, ep, half, full = fen:match("^(%S+) ([wb]) (%S+) (%S+) (%d+) (%d+)$")
  if not placement then error("not a FEN position: " .. tostring(fen)) end
  local board, rank, file = {}, 8, 1
  for i = 1, 64 do board[i] = "." end
  for c in placement:gmatch(".") do
    if c == "/" then
      rank, file = rank - 1, 1
    elseif c:match("%d") then
      file = file + tonumber(c)
    elseif c:match("[pnbrqkPNBRQK]") then
      if rank < 1 or file > 8 then error("not a FEN position: " .. fen) end
      board[sq(file, rank)] = c
      file = file + 1
    else
      error("not a FEN position: " .. fen)
    end
  end
  return {
    board = board, side = side, castling = castling == "-" and "" or castling,
    ep = ep == "-" and nil or parse_square(ep), half = tonumber(half), full = tonumber(full),
  }
end

local function to_fen(pos)
  local rows = {}
  for rank = 8, 1, -1 do
    local row, empty = {}, 0
    for file = 1, 8 do
      local p = pos.board[sq(file, rank)]
      if p == "." then
        empty = empty + 1
      else
        if empty > 0 then row[#row + 1] = tostring(empty); empty = 0 end
        row[#row + 1] = p
      end
    end
    if empty > 0 then row[#row + 1] = tostring(empty) end
    rows[#rows + 1] = table.concat(row)
  end
  return table.concat(rows, "/") .. " " .. pos.side .. " " .. (pos.castling == "" and "-" or pos.castling)
    .. " " .. (pos.ep and name_of(pos.ep) or "-") .. " " .. pos.half .. " " .. pos.full
end

local KNIGHT = { { 1, 2 }, { 2, 1 }, { 2, -1 }, { 1, -2 }, { -1, -2 }, { -2, -1 }, { -2, 1 }, { -1, 2 } }
local KING = { { 1, 0 }, { 1, 1 }, { 0, 1 }, { -1, 1 }, { -1, 0 }, { -1, -1 }, { 0, -1 }, { 1, -1 } }
local ROOK = { { 1, 0 }, { -1, 0 }, { 0, 1 }, { 0, -1 } }
local BISHOP = { { 1, 1 }, { 1, -1 }, { -1, 1 }, { -1, -1 } }

local function step(s, df, dr)
  local f, r = file_of(s) + df, rank_of(s) + dr
  if f < 1 or f > 8 or r < 1 or r > 8 then return nil end
  return sq(f, r)
end

-- Whether side `by` attacks square s.
local function attacked(board, s, by)
  local up = by == "w" and 1 or -1
  for _, df in ipairs({ -1, 1 }) do
    local from = step(s, df, -up)
    if from and board[from] == (by == "w" and "P" or "p") then return true end
  end
  local function is(piece, kinds)
    return piece ~= "." and color(piece) == by and kinds:find(piece:lower(), 1, true) ~= nil
  end
  for _, d in ipairs(KNIGHT) do
    local from = step(s, d[1], d[2])
    if from and is(board[from], "n") then return true end
  end
  for _, d in ipairs(KING) do
    local from = step(s, d[1], d[2])
    if from and is(board[from], "k") then return true end
  end
  for _, set in ipairs({ { ROOK, "rq" }, { BISHOP, "bq" } }) do
    for _, d in ipairs(set[1]) do
      local from = step(s, d[1], d[2])
      while from do
        local p = board[from]
        if p ~= "." then
          if is(p, set[2]) then return true end
          break
        end
        from = step(from, d[1], d[2])
      end
    end
  end
  return false
end

local function king_square(board, side)
  local king = side == "w" and "K" or "k"
  for s = 1, 64 do if board[s] == king then return s end end
  return nil
end

local function in_check(pos, side)
  local k = king_square(pos.board, side)
  return k ~= nil and attacked(pos.board, k, other(side))
end

-- Moves that follow the pieces' rules, before checking that the mover's king is safe:
-- {from, to, promotion?, castle?, en_passant?}.
local function pseudo_moves(pos)
  local moves, board, side = {}, pos.board, pos.side
  local function add(from, to, extra)
    local m = { from = from, to = to }
    for k, v in pairs(extra or {}) do m[k] = v end
    moves[#moves + 1] = m
  end
  for from = 1, 64 do
    local p = board[from]
    if color(p) == side then
      local kind = p:lower()
      if kind == "p" then
        local up = side == "w" and 1 or -1
        local last = side == "w" and 8 or 1
        local home = side == "w" and 2 or 7
        local function pawn_to(to, extra)
          if rank_of(to) == last then
            for _, promo in ipairs({ "q", "r", "b", "n" }) do
              local e = { promotion = promo }
              for k, v in pairs(extra or {}) do e[k] = v end
              add(from, to, e)
            end
          else
            add(from, to, extra)
          end
        end
        local one = step(from, 0, up)
        if one and board[one] == "." then
          pawn_to(one)
          local two = step(one, 0, up)
          if rank_of(from) == home and two and board[two] == "." then add(from, two, { double = true }) end
        end
        for _, df in ipairs({ -1, 1 }) do
          local to = step(from, df, up)
          if to then
            if board[to] ~= "." and color(board[to]) ~= side then pawn_to(to)
            elseif pos.ep == to then add(from, to, { en_passant = true }) end
          end
        end
      elseif kind == "n" or kind == "k" then
        for _, d in ipairs(kind == "n" and KNIGHT or KING) do
          local to = step(from, d[1], d[2])
          if to and color(board[to]) ~= side then add(from, to) end
        end
        if kind == "k" then
          local rank = side == "w" and 1 or 8
          local rights = side == "w" and { k = "K", q = "Q" } or { k = "k", q = "q" }
          local rook = side == "w" and "R" or "r"
          if from == sq(5, rank) and not attacked(board, from, other(side)) then
            if pos.castling:find(rights.k, 1, true) and board[sq(6, rank)] == "." and board[sq(7, rank)] == "."
              and board[sq(8, rank)] == rook and not attacked(board, sq(6, rank), other(side)) then
              add(from, sq(7, rank), { castle = "k" })
            end
            if pos.castling:find(rights.q, 1, true) and board[sq(4, rank)] == "." and board[sq(3, rank)] == "."
              and board[sq(2, rank)] == "." and board[sq(1, rank)] == rook
              and not attacked(board, sq(4, rank), other(side)) then
              add(from, sq(3, rank), { castle = "q" })
            end
          end
        end
      else
        local dirs = kind == "r" and ROOK or kind == "b" and BISHOP or nil
        local sets = dirs and { dirs } or { ROOK, BISHOP }
        for _, set in ipairs(sets) do
          for _, d in ipairs(set) do
            local to = step(from, d[1], d[2])
            while to do
              if board[to] == "." then
                add(from, to)
              else
                if color(board[to]) ~= side then add(from, to) end
                break
              end
              to = step(to, d[1], d[2])
            end
          end
        end
      end
    end
  end
  return moves
end

local function make(pos, m)
  local board = {}
  for i = 1, 64 do board[i] = pos.board[i] end
  local piece, captured = board[m.from], board[m.to]
  board[m.to], board[m.from] = piece, "."
  if m.en_passant then
    board[sq(file_of(m.to), rank_of(m.from))] = "."
    captured = "p"
  end
  if m.promotion then
    board[m.to] = pos.side == "w" and m.promotion:upper() or m.promotion
  end
  if m.castle then
    local rank = rank_of(m.from)
    local rook_from, rook_to = m.castle == "k" and sq(8, rank) or sq(1, rank), m.castle == "k" and sq(6, rank) or sq(4, rank)
    board[rook_to], board[rook_from] = board[rook_from], "."
  end
  local castling = pos.castling
  local function drop(flags) castling = castling:gsub("[" .. flags .. "]", "") end
  if piece == "K" then drop("KQ") elseif piece == "k" then drop("kq") end
  for _, s in ipairs({ m.from, m.to }) do
    if s == sq(1, 1) then drop("Q") elseif s == sq(8, 1) then drop("K")
    elseif s == sq(1, 8) then drop("q") elseif s == sq(8, 8) then drop("k") end
  end
  local pawn = piece:lower() == "p"
  return {
    board = board, side = other(pos.side), castling = castling,
    ep = m.double and step(m.from, 0, pos.side == "w" and 1 or -1) or nil,
    half = (pawn or captured ~= ".") and 0 or pos.half + 1,
    full = pos.full + (pos.side == "b" and 1 or 0),
  }
end

local function uci(m) return name_of(m.from) .. name_of(m.to) .. (m.promotion or "") end

local function legal_moves(pos)
  local out = {}
  for _, m in ipairs(pseudo_moves(pos)) do
    if not in_check(make(pos, m), pos.side) then out[#out + 1] = m end
  end
  return out
end

-- The end of the game after a move, if it ended: result, winner ("w"/"b"/nil).
local function ending(pos)
  if #legal_moves(pos) == 0 then
    if in_check(pos, pos.side) then return "checkmate", other(pos.side) end
    return "stalemate", nil
  end
  if pos.half >= 100 then return "fifty-move rule", nil end
  local pieces = 0
  for s = 1, 64 do if pos.board[s] ~= "." then pieces = pieces + 1 end end
  if pieces == 2 then return "insufficient material", nil end
  return nil, nil
end

-- ---- The games -----------------------------------------------------------------------

local function game_of(id)
  if math.type(id) ~= "integer" then error("give the game's number as `game`") end
  local g = goop.db.query("SELECT * FROM games WHERE _id = ?", id)[1]
  if not g then error("there is no game " .. id) end
  return g
end

local function clean_name(name)
  name = type(name) == "string" and name or ""
  name = name:gsub("%c", ""):sub(1, 60)
  if name == "" then name = goop.peer.label ~= "" and goop.peer.label or goop.peer.id:sub(1, 8) end
  return name
end

local function announce(id)
  pcall(goop.group.send, GROUP, { type = "game", game = id })
end

local function view(g)
  local out = { game = g._id, fen = g.state, status = g.status, result = g.result, winner = g.winner,
    white = g.white, black = g.black, white_name = g.white_name, black_name = g.black_name,
    check = g.in_check == 1 }
  return out
end

call = goop.route({
  create = function(request)
    local p = request.params
    local fen = START
    if p.fen ~= nil then
      goop.owner()
      fen = to_fen(parse_fen(p.fen))
      if not king_square(parse_fen(fen).board, "w") or not king_square(parse_fen(fen).board, "b") then
        error("a position needs both kings")
      end
    end
    local me = goop.peer.id
    local open = goop.db.scalar("SELECT COUNT(*) FROM games WHERE white = ? AND status = 'open'", me)
    if open >= 3 then error("you have three open games already; wait for someone to join one") end
    goop.db.exec("INSERT INTO games (_owner, white, white_name, black, black_name, state, status, result, winner) VALUES (?, ?, ?, '', '', ?, 'open', '', '')",
      me, me, clean_name(p.name), fen)
    local id = goop.db.scalar("SELECT _id FROM games WHERE white = ? ORDER BY _id DESC LIMIT 1", me)
    announce(id)
    return view(game_of(id))
  end,

  join = function(request)
    local g = game_of(request.params.game)
    local me = goop.peer.id
    if g.status ~= "open" then error("this game is not open any more") end
    if g.white == me then error("you cannot play against yourself; wait for someone to join") end
    local changed = goop.db.exec("UPDATE games SET black = ?, black_name = ?, status = 'playing' WHERE _id = ? AND status = 'open'",
      me, clean_name(request.params.name), g._id)
    if changed ~= 1 then error("someone else joined first") end
    announce(g._id)
    return view(game_of(g._id))
  end,

  legal = function(request)
    local g = game_of(request.params.game)
    if g.status ~= "playing" then return { moves = {} } end
    local list = {}
    for _, m in ipairs(legal_moves(parse_fen(g.state))) do list[#list + 1] = uci(m) end
    return { moves = list }
  end,

  move = function(request)
    local g = game_of(request.params.game)
    local me = goop.peer.id
    if g.status ~= "playing" then error("this game is not being played") end
    local pos = parse_fen(g.state)
    local mover = pos.side == "w" and g.white or g.black
    if me ~= g.white and me ~= g.black then error("you are not playing this game") end
    if me ~= mover then error("it is not your turn") end
    local text = request.params.move
    if type(text) ~= "string" or not text:match("^[a-h][1-8][a-h][1-8][qrbn]?$") then
      error("write a move like e2e4 (or e7e8q to promote)")
    end
    local from, to, promo = parse_square(text:sub(1, 2)), parse_square(text:sub(3, 4)), text:sub(5, 5)
    local chosen
    for _, m in ipairs(legal_moves(pos)) do
      if m.from == from and m.to == to and (m.promotion or "") == (promo ~= "" and promo or (m.promotion and "q" or "")) then
        chosen = m
        break
      end
    end
    if not chosen then error("illegal move " .. text) end
    local after = make(pos, chosen)
    local result, winner = ending(after)
    local status = result and (winner and "won" or "draw") or "playing"
    local winner_id = winner == "w" and g.white or winner == "b" and g.black or ""
    local ply = goop.db.scalar("SELECT COUNT(*) FROM moves WHERE game = ?", g._id) + 1
    local check = in_check(after, after.side) and 1 or 0
    local changed = goop.db.exec("UPDATE games SET state = ?, status = ?, result = ?, winner = ?, in_check = ? WHERE _id = ? AND state = ? AND status = 'playing'",
      to_fen(after), status, result or "", winner_id, check, g._id, g.state)
    if changed ~= 1 then error("the game changed meanwhile; look again") end
    goop.db.exec("INSERT INTO moves (_owner, game, ply, move, by) VALUES (?, ?, ?, ?, ?)", me, g._id, ply, uci(chosen), me)
    announce(g._id)
    return view(game_of(g._id))
  end,

  resign = function(request)
    local g = game_of(request.params.game)
    local me = goop.peer.id
    if g.status ~= "playing" then error("this game is not being played") end
    if me ~= g.white and me ~= g.black then error("you are not playing this game") end
    local winner = me == g.white and g.black or g.white
    goop.db.exec("UPDATE games SET status = 'won', result = 'resignation', winner = ? WHERE _id = ? AND status = 'playing'", winner, g._id)
    announce(g._id)
    return view(game_of(g._id))
  end,
})
