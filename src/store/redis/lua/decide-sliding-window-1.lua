--[[
  decide-sliding-window-1.lua: one segmented sliding-window operation on one key, atomically.

  The same semantics and the same arithmetic, in the same order, as
  src/algorithms/sliding-window.ts: the window of `windowMs` is split into S segments of
  g = windowMs / S aligned on the clock; at time t in segment k, with f the elapsed fraction of k,
  the cost in the window is estimated as count[k-S] * (1 - f) + count[k-S+1] + ... + count[k], and
  a hit of cost c is admitted when estimate + c <= capacity (with EPSILON slack).

  KEYS[1]  the ring. A string "<g> <k> <count of slot 0> ... <count of slot S>" ("%.17g" each;
           segment j lives in slot j mod (S + 1)), always written with SET ... PX: it expires when
           the newest counted segment leaves the window, when forgetting it changes no decision.
           Absent, unreadable, or written for another g or S: an empty window.
  ARGV[1]  op: "consume" (decide and count the cost), "peek" (decide, write nothing) or "refund"
           (take `cost` back from the newest segments first, never below 0, then report as "peek"
           would).
  ARGV[2]  cost, a number > 0.
  ARGV[3]  capacity (the rule's limit per window), a number > 0.
  ARGV[4]  windowMs, a number > 0.
  ARGV[5]  segments S, an integer 1..60.
  ARGV[6]  nowMs override. "" in production: the time is Redis `TIME`, so every client shares one
           clock and one segment alignment. Tests of Lua/TypeScript agreement pass a number (ms)
           instead; the expiry is then at least 60 s so keys outlive a test that drives time
           faster or slower than real time.
  Returns  {allowed (integer 0|1), remaining, resetAfterMs, retryAfterMs, nowMs}: all but the
           first are strings ("%.17g", or "inf"), because Redis truncates Lua numbers to integers.
]]

local EPSILON = 1e-9
local MAX_TTL_MS = 1e13 -- about 317 years; keeps PX in range for extreme rules

local function fmt(x)
  if x == math.huge then return "inf" end
  return string.format("%.17g", x)
end

local op = ARGV[1]
local cost = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local windowMs = tonumber(ARGV[4])
local segments = tonumber(ARGV[5])
local now
local minTtlMs = 1
if ARGV[6] ~= "" then
  now = tonumber(ARGV[6])
  minTtlMs = 60000
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

local segMs = windowMs / segments
local ring = segments + 1
local counts = {}
local k = math.floor(now / segMs)
local current = nil
-- Segment numbers must be exact integers (below 2^52) for the ring arithmetic; a window of
-- microseconds on an epoch clock would not be. Every loop below also counts with a small integer,
-- so no input can keep the script (and Redis) busy.
if not (k < 4503599627370496) then
  return redis.error_reply("ERR sliding window: segment index beyond 2^52 (windowMs / segments too small)")
end

local stored = redis.call("GET", KEYS[1])
if stored then
  local values = {}
  for word in string.gmatch(stored, "%S+") do values[#values + 1] = tonumber(word) end
  local c = values[2]
  if #values == ring + 2 and values[1] == segMs and c and c == c and c < 4503599627370496 then
    current = c
    for i = 1, ring do counts[i] = values[i + 2] or 0 end
  end
end
if current == nil then
  current = k
  for i = 1, ring do counts[i] = 0 end
end

-- Move the ring to the segment containing now, zeroing segments that fell out. A clock that goes
-- backwards is treated as standing still.
if k > current then
  if k - current >= ring then
    for i = 1, ring do counts[i] = 0 end
  else
    for i = 1, k - current do counts[((current + i) % ring) + 1] = 0 end
  end
  current = k
end
k = current

local function count(segment)
  return counts[(segment % ring) + 1]
end

local function estimate()
  local frac = (now - k * segMs) / segMs
  if frac < 0 then frac = 0 elseif frac > 1 then frac = 1 end
  local sum = count(k - segments) * (1 - frac)
  for i = segments - 1, 0, -1 do sum = sum + count(k - i) end
  return sum
end

-- Time until estimate + cost <= capacity with no further hits: one segment boundary at a time.
local function waitMs()
  if cost > capacity + EPSILON then return math.huge end
  local room = capacity - cost + EPSILON
  for s = 0, segments do
    local seg = k + s
    local oldest = 0
    if seg - segments <= k then oldest = count(seg - segments) end
    local newer = 0
    for i = segments - 1, 0, -1 do
      local j = seg - i
      if j <= k then newer = newer + count(j) end
    end
    if newer <= room then
      local segStart = seg * segMs
      local from = segStart
      if seg == k then from = now end
      local fromFrac = (from - segStart) / segMs
      if oldest * (1 - fromFrac) + newer <= room then return from - now end
      local f = 1 - (room - newer) / oldest
      return segStart + f * segMs - now
    end
  end
  return windowMs
end

-- Time until every counted segment has left the window: segment j stops counting at (j+S+1)*g.
local function resetMs()
  for i = 0, segments do
    local j = k - i
    if count(j) > 0 then
      local r = (j + segments + 1) * segMs - now
      if r > 0 then return r end
      return 0
    end
  end
  return 0
end

local changed = false
if op == "refund" then
  local left = cost
  for i = 0, segments do
    local j = k - i
    local c = count(j)
    if c > 0 then
      local take = c < left and c or left
      counts[(j % ring) + 1] = c - take
      left = left - take
      changed = true
      if left <= 0 then break end
    end
  end
  op = "peek"
end

local used = estimate()
local allowed = used + cost <= capacity + EPSILON
if allowed and op == "consume" then
  local slot = (k % ring) + 1
  counts[slot] = counts[slot] + cost
  changed = true
end
local after = used
if allowed then after = used + cost end
local remaining = math.floor(capacity - after + EPSILON)
local resetAfterMs = resetMs()

if changed then
  if resetAfterMs > 0 then
    local ttl = math.floor(resetAfterMs) + 1
    if ttl < minTtlMs then ttl = minTtlMs end
    if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
    local parts = { fmt(segMs), fmt(k) }
    for i = 1, ring do parts[i + 2] = fmt(counts[i]) end
    redis.call("SET", KEYS[1], table.concat(parts, " "), "PX", ttl)
  elseif stored then
    redis.call("DEL", KEYS[1]) -- nothing counted any more: the same as absent
  end
end

local retryAfterMs = 0
if not allowed then retryAfterMs = waitMs() end
return {
  allowed and 1 or 0,
  fmt(remaining > 0 and remaining or 0),
  fmt(resetAfterMs),
  fmt(retryAfterMs),
  fmt(now),
}
