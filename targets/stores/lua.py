"""Lua fragments that several scripts share: Redis's clock, and the activity hash's reads and writes.

Each is a ``local function`` to prepend to a script. The activity hash's fields are documented in
:mod:`targets.stores.activity`.
"""

#: Lua: ``now()`` is Redis's clock as (seconds as a number, the same as an exact decimal string).
NOW_LUA = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6, t[1] .. '.' .. string.format('%06d', t[2])
end
"""

#: Lua: ``touch(key, window, half, every)`` records a read in the reader's activity hash and returns flags:
#: 1 when the reader was inactive (``window`` > 0 and its last read older than that, or none) or its timeline was
#: marked ``stale`` (then unmarked), 2 when its edges are
#: due to be decided again (``every`` > 0 and that long since the last time; then marked as decided now).
#: ``half`` > 0 also counts the read in ``r`` (decayed). With all three 0 it does nothing.
TOUCH_LUA = (
    NOW_LUA
    + """
local function touch(key, window, half, every)
  if window == 0 and half == 0 and every == 0 then return 0 end
  local at, stamp = now()
  local h = redis.call('HMGET', key, 'seen', 'r', 'e', 'stale')
  local seen, flags = tonumber(h[1]), 0
  if window > 0 and (seen == nil or at - seen > window) then flags = 1 end
  -- A timeline a fan-out left short (an edge it moved to pull had filled a capped timeline) is rebuilt as well.
  if h[4] then
    flags = 1
    redis.call('HDEL', key, 'stale')
  end
  local fields = {'seen', stamp}
  if half > 0 then
    local r = tonumber(h[2]) or 0
    if seen ~= nil then r = r * 2 ^ (-(at - seen) / half) end
    fields[#fields + 1], fields[#fields + 2] = 'r', tostring(r + 1)
  end
  if every > 0 and at - (tonumber(h[3]) or 0) >= every then
    flags = flags + 2
    fields[#fields + 1], fields[#fields + 2] = 'e', stamp
  end
  redis.call('HSET', key, unpack(fields))
  return flags
end
"""
)

#: Lua: ``active(key, cutoff)``: whether the user of this activity hash read at or after ``cutoff`` (seconds).
ACTIVE_LUA = """
local function active(key, cutoff)
  return (tonumber(redis.call('HGET', key, 'seen')) or 0) >= cutoff
end
"""

#: Lua: adaptive's rule at fan-out time. ``rates(act, declared, half, at)`` is a user's (reads, posts) from its activity
#: hash: declared, or its decayed counts taken on to ``at``. ``pull_edge(act, set, home, author, posts, ratio, declared,
#: half, at, ids, cap)`` moves the edge from ``author`` to this follower to pull when the follower reads less than
#: ``ratio`` times as often as the author posts (``posts``): the author joins the follower's set (only a built set) and
#: its posts ``ids`` (its author timeline) leave the home timeline, which is marked ``stale`` (rebuilt on the next
#: read) when it was full, as the cap may have trimmed older posts it now needs, or when ``ids`` is full (then an older
#: post of the author's may be left in it). Returns whether the edge is (now) pulled.
EDGE_LUA = """
local function rates(act, declared, half, at)
  if declared then
    local h = redis.call('HMGET', act, 'dr', 'dp')
    return tonumber(h[1]) or 0, tonumber(h[2]) or 0
  end
  local h = redis.call('HMGET', act, 'r', 'seen', 'p', 'pt')
  local r, p = tonumber(h[1]) or 0, tonumber(h[3]) or 0
  if h[2] then r = r * 2 ^ (-(at - tonumber(h[2])) / half) end
  if h[4] then p = p * 2 ^ (-(at - tonumber(h[4])) / half) end
  return r, p
end

local function pull_edge(act, set, home, author, posts, ratio, declared, half, at, ids, cap)
  if posts <= 0 or redis.call('EXISTS', set) == 0 then return false end
  local reads = rates(act, declared, half, at)
  if reads >= ratio * posts then return false end
  redis.call('SADD', set, author)
  local size, removed = redis.call('ZCARD', home), 0
  for i = 1, #ids, 1000 do
    removed = removed + redis.call('ZREM', home, unpack(ids, i, math.min(i + 999, #ids)))
  end
  -- Stale when the cap may have trimmed posts the timeline now needs, or when the author's timeline is full: it has
  -- just trimmed a post (the one before the post being delivered) that this timeline may still hold.
  if (removed > 0 and size >= cap) or #ids >= cap then redis.call('HSET', act, 'stale', '1') end
  return true
end
"""
