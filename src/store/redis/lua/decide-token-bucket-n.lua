--[[
  decide-token-bucket-n.lua: token-bucket operations on n keys (n >= 1), atomically, in order.

  The same semantics and the same arithmetic, in the same order, as src/algorithms/token-bucket.ts:
  a bucket holds up to `capacity` tokens and refills continuously at `ratePerMs`; a hit of cost c
  is admitted when at least c tokens are present (with EPSILON slack), and takes them. The n hits
  of one call are decided one after the other at the same instant, exactly as n calls would be
  (a key may appear more than once); batching them saves a round trip and a TIME per hit.

  KEYS[i]    a bucket. A string "<tokens> <lastMs>" (each "%.17g", so doubles round-trip
             exactly), always written with SET ... PX: it expires the moment the bucket would be
             full again, when forgetting it changes no decision. Absent or unreadable: full.
  ARGV[1]    op for every key: "consume" (decide and take the cost), "peek" (decide, write
             nothing) or "refund" (refill, give the cost back up to `capacity`, then report as
             "peek" would).
  ARGV[2]    capacity (the rule's burst), a number > 0.
  ARGV[3]    ratePerMs (limit / windowMs), a number > 0.
  ARGV[4]    nowMs override. "" in production: the time is Redis `TIME`, so every client shares
             one clock. Tests of Lua/TypeScript agreement pass a number (ms) instead; expiries are
             then at least 60 s so keys outlive a test that drives time faster than real time.
  ARGV[4+i]  the cost of the hit on KEYS[i], a number > 0.
  Returns    {allowed_1, remaining_1, resetAfterMs_1, retryAfterMs_1, allowed_2, ...}: allowed
             (0|1) and remaining as integers; the durations as strings ("%.17g", or "inf") since
             Redis truncates Lua numbers to integers, or the integer 0.
]]

local EPSILON = 1e-9
local MAX_TTL_MS = 1e13 -- about 317 years; keeps PX in range for extreme rules

local function ms(x)
  if x == 0 then return 0 end
  if x == math.huge then return "inf" end
  return string.format("%.17g", x)
end

local op = ARGV[1]
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local now
local minTtlMs = 1
if ARGV[4] ~= "" then
  now = tonumber(ARGV[4])
  minTtlMs = 60000
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local cost = tonumber(ARGV[4 + i])

  -- State: a bucket first seen now is full (token-bucket.ts `init`).
  local tokens, last = capacity, now
  local stored = redis.call("GET", key)
  if stored then
    local t, l = string.match(stored, "^(%S+) (%S+)$")
    t, l = tonumber(t), tonumber(l)
    if t and l then tokens, last = t, l end
  end

  -- Refill. A clock that stands still or goes back refills nothing and does not move `last` back.
  local changed = false
  local elapsed = now - last
  if elapsed > 0 then
    tokens = tokens + elapsed * rate
    if tokens > capacity then tokens = capacity end
    last = now
    changed = true
  end

  local allowed
  if op == "refund" then
    tokens = tokens + cost
    if tokens > capacity then tokens = capacity end
    changed = true
    allowed = cost <= tokens + EPSILON
  elseif cost <= tokens + EPSILON then
    allowed = true
    if op == "consume" then
      tokens = tokens - cost
      if tokens < 0 then tokens = 0 end
      changed = true
    end
  else
    allowed = false
  end

  -- The TypeScript decide() stores the refill even when it refuses, so this does too: the next
  -- refill then starts from the same numbers and the two stay equal to the last bit.
  local resetAfterMs = (capacity - tokens) / rate
  if changed and op ~= "peek" then
    if resetAfterMs > 0 then
      local ttl = math.floor(resetAfterMs) + 1
      if ttl < minTtlMs then ttl = minTtlMs end
      if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
      redis.call("SET", key, string.format("%.17g %.17g", tokens, last), "PX", ttl)
    elseif stored then
      redis.call("DEL", key) -- full again: the same as absent
    end
  end

  local retryAfterMs = 0
  if not allowed then
    if cost > capacity + EPSILON then
      retryAfterMs = math.huge
    else
      retryAfterMs = (cost - tokens) / rate
    end
  end
  if resetAfterMs < 0 then resetAfterMs = 0 end
  if retryAfterMs < 0 then retryAfterMs = 0 end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = math.floor(tokens + EPSILON)
  out[#out + 1] = ms(resetAfterMs)
  out[#out + 1] = ms(retryAfterMs)
end
return out
