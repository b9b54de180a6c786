--[[
  decide-sliding-window-n.lua: segmented sliding-window operations on n keys (n >= 1),
  atomically, in order.

  The same semantics and the same arithmetic, in the same order, as
  src/algorithms/sliding-window.ts (decide, peek, adjust) and src/limiter/key-blocks.ts: the
  window of `windowMs` is split into S segments of g = windowMs / S aligned on the clock; at time
  t in segment k, with f the elapsed fraction of k, the cost in the window is estimated as
  count[k-S] * (1 - f) + count[k-S+1] + ... + count[k], and a hit of cost c is admitted when
  estimate + c <= capacity (with EPSILON slack). The n hits of one call are decided one after the
  other at the same instant, exactly as n calls would be (a key may appear more than once).

  KEYS[i]    a ring. A string "<g> <k> <count of slot 0> ... <count of slot S>", optionally
             followed by " <blockedUntilMs>" ("%.17g" each; segment j lives in slot j mod (S + 1)),
             always written with SET ... PX: it expires when the newest counted segment leaves
             the window and any block has ended, when forgetting it changes no decision. Absent,
             unreadable, or written for another g or S: an empty window, not blocked. Every op
             keeps a block in force; a block that has ended is dropped when the key is next
             written.
  ARGV[1]    op for every key:
             "consume"  decide and count the cost;
             "peek"     decide, write nothing;
             "refund"   take the cost back from the newest segments first, never below 0, then
                        report as "peek" would;
             "charge"   count the cost in the current segment unconditionally (the window may go
                        past its limit, so later hits wait longer), then report as "peek" would;
             "block"    refuse every hit until now + cost (the cost slot is the duration, ms); a
                        longer block in force stays. Reports the refusal a blocked hit gets.
             While a key is blocked, "consume" and "peek" refuse without touching the counts:
             {0, 0, rest of the block, rest of the block}.
  ARGV[2]    capacity (the rule's limit per window), a number > 0.
  ARGV[3]    windowMs, a number > 0.
  ARGV[4]    segments S, an integer 1..60.
  ARGV[5]    nowMs override. "" in production: the time is Redis `TIME`, so every client shares
             one clock and one segment alignment. Tests of Lua/TypeScript agreement pass a number
             (ms) instead; expiries are then at least 60 s so keys outlive a test that drives time
             faster than real time.
  ARGV[5+i]  the cost of the op on KEYS[i], a number > 0.
  Returns    {allowed_1, remaining_1, resetAfterMs_1, retryAfterMs_1, allowed_2, ...}: allowed
             (0|1) and remaining as integers; the durations as strings ("%.17g", or "inf") since
             Redis truncates Lua numbers to integers, or the integer 0.
  Errors     when windowMs / S is so small that segment numbers on Redis' epoch clock pass 2^52.
]]

local EPSILON = 1e-9
local MAX_TTL_MS = 1e13 -- about 317 years; keeps PX in range for extreme rules
local EXACT = 4503599627370496 -- 2^52: segment numbers below it are exact integers

local function ms(x)
  if x == 0 then return 0 end
  if x == math.huge then return "inf" end
  return string.format("%.17g", x)
end

local op = ARGV[1]
local capacity = tonumber(ARGV[2])
local windowMs = tonumber(ARGV[3])
local segments = tonumber(ARGV[4])
local now
local minTtlMs = 1
if ARGV[5] ~= "" then
  now = tonumber(ARGV[5])
  minTtlMs = 60000
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

if not (segments and segments >= 1 and segments <= 60 and segments == math.floor(segments)
    and capacity and capacity > 0 and windowMs and windowMs > 0) then
  return redis.error_reply("ERR sliding window: bad capacity, windowMs or segments (1..60)")
end

local segMs = windowMs / segments
local ring = segments + 1
local nowSegment = math.floor(now / segMs)
-- Every loop below counts with a small integer, so no input can keep the script (and Redis)
-- busy; segment numbers must also be exact for the ring arithmetic.
if not (nowSegment < EXACT) then
  return redis.error_reply("ERR sliding window: segment number beyond 2^52 (windowMs / segments too small)")
end

local function count(counts, segment)
  return counts[(segment % ring) + 1]
end

-- The estimated cost inside the window ending now, which lies in segment k.
local function estimate(counts, k)
  local frac = (now - k * segMs) / segMs
  if frac < 0 then frac = 0 elseif frac > 1 then frac = 1 end
  local sum = count(counts, k - segments) * (1 - frac)
  for i = segments - 1, 0, -1 do sum = sum + count(counts, k - i) end
  return sum
end

-- Time until estimate + cost <= capacity with no further hits: one segment boundary at a time.
local function waitMs(counts, k, cost)
  if cost > capacity + EPSILON then return math.huge end
  local room = capacity - cost + EPSILON
  for s = 0, segments do
    local seg = k + s
    local oldest = 0
    if seg - segments <= k then oldest = count(counts, seg - segments) end
    local newer = 0
    for i = segments - 1, 0, -1 do
      local j = seg - i
      if j <= k then newer = newer + count(counts, j) end
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
local function resetMs(counts, k)
  for i = 0, segments do
    local j = k - i
    if count(counts, j) > 0 then
      local r = (j + segments + 1) * segMs - now
      if r > 0 then return r end
      return 0
    end
  end
  return 0
end

-- Writes the ring, kept until nothing in it counts and its block (if any, in force) has ended.
local function save(key, stored, counts, k, resetAfterMs, untilMs)
  local keepMs = resetAfterMs
  if untilMs and untilMs - now > keepMs then keepMs = untilMs - now end
  if keepMs > 0 then
    local ttl = math.floor(keepMs) + 1
    if ttl < minTtlMs then ttl = minTtlMs end
    if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
    local parts = { string.format("%.17g", segMs), string.format("%.17g", k) }
    for i = 1, ring do parts[i + 2] = string.format("%.17g", counts[i]) end
    if untilMs then parts[ring + 3] = string.format("%.17g", untilMs) end
    redis.call("SET", key, table.concat(parts, " "), "PX", ttl)
  elseif stored then
    redis.call("DEL", key) -- nothing counted any more and not blocked: the same as absent
  end
end

local out = {}
local function report(allowed, remaining, resetAfterMs, retryAfterMs)
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining > 0 and remaining or 0
  out[#out + 1] = ms(resetAfterMs)
  out[#out + 1] = ms(retryAfterMs)
end

for n = 1, #KEYS do
  local key = KEYS[n]
  local cost = tonumber(ARGV[5 + n])
  local counts = {}
  local current = nil
  local untilMs = nil
  local stored = redis.call("GET", key)
  if stored then
    local values = {}
    for word in string.gmatch(stored, "%S+") do values[#values + 1] = tonumber(word) end
    local c = values[2]
    if (#values == ring + 2 or #values == ring + 3) and values[1] == segMs and c and c == c
        and c < EXACT then
      current = c
      for i = 1, ring do counts[i] = values[i + 2] or 0 end
      local u = values[ring + 3]
      if u and u > now then untilMs = u end
    end
  end
  if current == nil then
    current = nowSegment
    for i = 1, ring do counts[i] = 0 end
  end

  -- Move the ring to the segment containing now, zeroing segments that fell out. A clock that
  -- goes backwards is treated as standing still.
  if nowSegment > current then
    if nowSegment - current >= ring then
      for i = 1, ring do counts[i] = 0 end
    else
      for i = 1, nowSegment - current do counts[((current + i) % ring) + 1] = 0 end
    end
    current = nowSegment
  end
  local k = current

  if op == "block" then
    if untilMs == nil or untilMs < now + cost then untilMs = now + cost end
    save(key, stored, counts, k, resetMs(counts, k), untilMs)
    report(false, 0, untilMs - now, untilMs - now)
  elseif untilMs and (op == "consume" or op == "peek") then
    report(false, 0, untilMs - now, untilMs - now)
  else
    local changed = false
    if op == "refund" then
      local left = cost
      for i = 0, segments do
        local j = k - i
        local c = count(counts, j)
        if c > 0 then
          local take = c < left and c or left
          counts[(j % ring) + 1] = c - take
          left = left - take
          changed = true
          if left <= 0 then break end
        end
      end
    elseif op == "charge" then
      local slot = (k % ring) + 1
      counts[slot] = counts[slot] + cost
      changed = true
    end

    local used = estimate(counts, k)
    local allowed = used + cost <= capacity + EPSILON
    if allowed and op == "consume" then
      local slot = (k % ring) + 1
      counts[slot] = counts[slot] + cost
      changed = true
    end
    local after = used
    if allowed then after = used + cost end
    local resetAfterMs = resetMs(counts, k)
    if changed then save(key, stored, counts, k, resetAfterMs, untilMs) end

    if untilMs then
      report(false, 0, untilMs - now, untilMs - now) -- refund or charge of a blocked key
    else
      local retryAfterMs = 0
      if not allowed then retryAfterMs = waitMs(counts, k, cost) end
      report(allowed, math.floor(capacity - after + EPSILON), resetAfterMs, retryAfterMs)
    end
  end
end
return out
