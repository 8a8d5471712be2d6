--- Taking the quiz: start (the timer begins here) and submit (once per peer, in time).
-- Responses are written only here, so the rules hold whatever a page sends: the quiz must be
-- open, a peer answers once, and with a timer the answers must come within the time allowed
-- (plus three seconds for the trip) after this peer said it started.
local GRACE = 3

local function settings()
  return goop.db.query("SELECT * FROM settings ORDER BY _id LIMIT 1")[1]
    or { open = 1, time_limit = 0 }
end

local function answered(me)
  return goop.db.scalar("SELECT COUNT(*) FROM responses WHERE _owner = ?", me) > 0
end

call = goop.route({
  start = function(request)
    local me, s = goop.peer.id, settings()
    if s.open ~= 1 then error("this quiz is closed") end
    if answered(me) then error("you have answered already: one response per peer") end
    local started = goop.db.scalar("SELECT started FROM attempts WHERE _owner = ?", me)
    if not started then
      started = os.time()
      goop.db.exec("INSERT INTO attempts (_owner, started) VALUES (?, ?)", me, started)
    end
    local left = s.time_limit > 0 and math.max(0, s.time_limit - (os.time() - started)) or nil
    return { time_limit = s.time_limit, left = left }
  end,

  submit = function(request)
    local me, s, p = goop.peer.id, settings(), request.params
    if s.open ~= 1 then error("this quiz is closed") end
    if answered(me) then error("you have answered already: one response per peer") end
    local started = goop.db.scalar("SELECT started FROM attempts WHERE _owner = ?", me)
    if not started then error("start the quiz first") end
    local seconds = os.time() - started
    if s.time_limit > 0 and seconds > s.time_limit + GRACE then
      error("the time is up: answers came after " .. seconds .. " s")
    end
    if type(p.answers) ~= "table" then error("answers must be an object of question numbers") end
    local questions = {}
    for _, q in ipairs(goop.db.query("SELECT _id, kind, options FROM questions")) do
      questions[tostring(q._id)] = { kind = q.kind, count = #goop.json.decode(q.options) }
    end
    local clean = {}
    for id, answer in pairs(p.answers) do
      local q = questions[tostring(id)]
      if not q then error("there is no question " .. tostring(id)) end
      if q.kind == "text" then
        if type(answer) ~= "string" then error("question " .. id .. " takes text") end
        clean[tostring(id)] = answer:sub(1, 1000)
      else
        if type(answer) ~= "table" then error("question " .. id .. " takes a list of choices") end
        if q.kind == "single" and #answer > 1 then error("question " .. id .. " takes one choice") end
        local list = {}
        for _, choice in ipairs(answer) do
          if math.type(choice) ~= "integer" or choice < 0 or choice >= q.count then
            error("question " .. id .. " has no choice " .. tostring(choice))
          end
          list[#list + 1] = choice
        end
        clean[tostring(id)] = list
      end
    end
    local name = type(p.name) == "string" and p.name:gsub("%c", ""):sub(1, 60) or ""
    if name == "" then name = goop.peer.label ~= "" and goop.peer.label or "anonymous" end
    goop.db.exec("INSERT INTO responses (_owner, name, answers, seconds) VALUES (?, ?, ?, ?)",
      me, name, goop.json.encode(clean), seconds)
    return { seconds = seconds }
  end,
})
