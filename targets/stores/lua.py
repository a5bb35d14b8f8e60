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
#: 1 when the reader was inactive (``window`` > 0 and its last read older than that, or none), 2 when its edges are
#: due to be decided again (``every`` > 0 and that long since the last time; then marked as decided now).
#: ``half`` > 0 also counts the read in ``r`` (decayed). With all three 0 it does nothing.
TOUCH_LUA = (
    NOW_LUA
    + """
local function touch(key, window, half, every)
  if window == 0 and half == 0 and every == 0 then return 0 end
  local at, stamp = now()
  local h = redis.call('HMGET', key, 'seen', 'r', 'e')
  local seen, flags = tonumber(h[1]), 0
  if window > 0 and (seen == nil or at - seen > window) then flags = 1 end
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
