--- The quiz's results: answers counted per option, scores and the leaderboard.
-- Runs on the owner's peer, which alone can read every response and the answer key; visitors
-- get the counts and the leaderboard when the owner shows results, and always their own score.
function call(request)
  local settings = goop.db.query("SELECT * FROM settings ORDER BY _id LIMIT 1")[1] or {}
  local questions = goop.db.query("SELECT _id, text, kind, options FROM questions ORDER BY position, _id")
  local key = {}
  for _, row in ipairs(goop.db.query("SELECT question_id, correct FROM answer_key")) do
    key[row.question_id] = goop.json.decode(row.correct)
  end
  local responses = goop.db.query("SELECT _owner, name, answers, seconds FROM responses ORDER BY _id")
  local counts, texts = {}, {}
  for _, q in ipairs(questions) do
    q.options = goop.json.decode(q.options)
    counts[q._id] = {}
    for i = 1, #q.options do counts[q._id][i] = 0 end
    texts[q._id] = {}
  end
  local function same(a, b)
    if #a ~= #b then return false end
    local seen = {}
    for _, v in ipairs(a) do seen[v] = true end
    for _, v in ipairs(b) do if not seen[v] then return false end end
    return true
  end
  local board, mine = {}, nil
  for _, r in ipairs(responses) do
    local ok, answers = pcall(goop.json.decode, r.answers)
    if not ok or type(answers) ~= "table" then answers = {} end
    local score = 0
    for _, q in ipairs(questions) do
      local a = answers[tostring(q._id)]
      if q.kind == "text" then
        if type(a) == "string" and #a > 0 and #texts[q._id] < 200 then table.insert(texts[q._id], a) end
      elseif type(a) == "table" then
        for _, choice in ipairs(a) do
          if math.type(choice) == "integer" and counts[q._id][choice + 1] then
            counts[q._id][choice + 1] = counts[q._id][choice + 1] + 1
          end
        end
        if key[q._id] and same(a, key[q._id]) then score = score + 1 end
      end
    end
    local entry = { name = r.name, peer = r._owner, score = score, seconds = r.seconds }
    table.insert(board, entry)
    if r._owner == goop.peer.id then mine = entry end
  end
  table.sort(board, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.seconds < b.seconds
  end)
  local scored = 0
  for _ in pairs(key) do scored = scored + 1 end
  -- A visitor sees the counts, the answers and the leaderboard only once they have answered (or
  -- the quiz is closed), never before: the correct answers are among them.
  local owner = goop.peer.id == goop.self.id
  local show = owner or (settings.show_results == 1 and (mine ~= nil or settings.open ~= 1))
  local out = { responses = #responses, out_of = scored, mine = mine, mode = settings.mode }
  if show then
    for _, q in ipairs(questions) do
      q.counts = counts[q._id]
      q.texts = texts[q._id]
      q.correct = key[q._id]
    end
    out.questions = questions
    if settings.mode == "quiz" then
      local top = {}
      for i = 1, math.min(#board, 20) do top[i] = board[i] end
      out.leaderboard = top
    end
  end
  return out
end
