-- The Lua half of the host API and of the sandbox; see `PRELUDE` in sandbox.rs.
local api, plain, maxbytes = ...
local format, select, type, tointeger, maxinteger, tostring =
  string.format, select, type, math.tointeger, math.maxinteger, tostring
local sort, rep = table.sort, string.rep
-- string.rep loops once per copy, even of an empty string: many copies get a look first. An
-- empty result is answered here; one beyond the memory limit is refused before the loop.
local function text(value)
  return type(value) == "string" or type(value) == "number"
end
string.rep = function(s, n, sep)
  if type(n) == "number" and n > 1000000 then
    local count = tointeger(n)
    if count and text(s) and (sep == nil or text(sep)) then
      local ls, lsep = #tostring(s), sep ~= nil and #tostring(sep) or 0
      if ls + lsep == 0 then return "" end
      if ls * 1.0 * count + lsep * 1.0 * (count - 1) > maxbytes then
        error("not enough memory", 2)
      end
    end
  end
  return rep(s, n, sep)
end
-- table.insert, remove and move loop in C over a length a `__len` can make up, where the
-- instruction hook cannot stop them: here they loop in Lua. table.sort sorts a plain table in
-- C, and one with length or index metamethods through a plain copy.
local function checktable(t, n, name)
  if type(t) ~= "table" then
    error(format("bad argument #%d to '%s' (table expected, got %s)", n, name, type(t)), 3)
  end
end
local function integer(value, n, name)
  local i = tointeger(value)
  if i == nil then
    error(format("bad argument #%d to '%s' (number has no integer representation)", n, name), 3)
  end
  return i
end
local function length(t)
  local n = tointeger(#t)
  if n == nil then error("object length is not an integer", 3) end
  return n
end
table.insert = function(t, ...)
  checktable(t, 1, "insert")
  local count = select("#", ...)
  local e = length(t) + 1
  if count == 1 then
    t[e] = ...
  elseif count == 2 then
    local pos, value = ...
    pos = integer(pos, 2, "insert")
    if pos < 1 or pos > e then
      error("bad argument #2 to 'insert' (position out of bounds)", 2)
    end
    for i = e, pos + 1, -1 do t[i] = t[i - 1] end
    t[pos] = value
  else
    error("wrong number of arguments to 'insert'", 2)
  end
end
table.remove = function(t, pos)
  checktable(t, 1, "remove")
  local size = length(t)
  if pos == nil then pos = size else pos = integer(pos, 2, "remove") end
  if pos ~= size and (pos < 1 or pos > size + 1) then
    error("bad argument #2 to 'remove' (position out of bounds)", 2)
  end
  local value = t[pos]
  for i = pos, size - 1 do
    t[i] = t[i + 1]
    pos = i + 1
  end
  t[pos] = nil
  return value
end
table.move = function(a1, f, e, t, a2)
  f, e, t = integer(f, 2, "move"), integer(e, 3, "move"), integer(t, 4, "move")
  if a2 == nil then a2 = a1 end
  checktable(a1, 1, "move")
  checktable(a2, 5, "move")
  if e >= f then
    if not (f > 0 or e < maxinteger + f) then
      error("bad argument #3 to 'move' (too many elements to move)", 2)
    end
    local n = e - f + 1
    if t > maxinteger - n + 1 then
      error("bad argument #4 to 'move' (destination wrap around)", 2)
    end
    if t > e or t <= f or a1 ~= a2 then
      for i = 0, n - 1 do a2[t + i] = a1[f + i] end
    else
      for i = n - 1, 0, -1 do a2[t + i] = a1[f + i] end
    end
  end
  return a2
end
table.sort = function(t, comp)
  if plain(t) then return sort(t, comp) end
  checktable(t, 1, "sort")
  local n = length(t)
  local copy = {}
  for i = 1, n do copy[i] = t[i] end
  sort(copy, comp)
  for i = 1, n do t[i] = copy[i] end
end
api.route = function(handlers)
  return function(request)
    local action = request and request.params and request.params.action
    local handler = action ~= nil and handlers[action]
    if not handler then
      error("unknown action " .. tostring(action), 2)
    end
    return handler(request)
  end
end
return setmetatable({}, {
  __index = api,
  __newindex = function() error("goop is read-only", 2) end,
  __metatable = "goop is protected",
})
