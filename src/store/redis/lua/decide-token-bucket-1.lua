--[[
  decide-token-bucket-1.lua: one token-bucket operation on one key, atomically.

  The same semantics and the same arithmetic, in the same order, as src/algorithms/token-bucket.ts:
  a bucket holds up to `capacity` tokens and refills continuously at `ratePerMs`; a hit of cost c
  is admitted when at least c tokens are present (with EPSILON slack), and takes them.

  KEYS[1]  the bucket. A string "<tokens> <lastMs>" (each "%.17g", so doubles round-trip exactly),
           always written with SET ... PX: it expires the moment the bucket would be full again,
           when forgetting it changes no decision. An absent or unreadable value is a full bucket.
  ARGV[1]  op: "consume" (decide and take the cost), "peek" (decide, write nothing) or "refund"
           (refill, give `cost` back up to `capacity`, then report as "peek" would).
  ARGV[2]  cost, a number > 0.
  ARGV[3]  capacity (the rule's burst), a number > 0.
  ARGV[4]  ratePerMs (limit / windowMs), a number > 0.
  ARGV[5]  nowMs override. "" in production: the time is Redis `TIME`, so every client shares one
           clock. Tests of Lua/TypeScript agreement pass a number (ms) instead; the expiry is then
           at least 60 s so keys outlive a test that drives time faster or slower than real time.
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
local rate = tonumber(ARGV[4])
local now
local minTtlMs = 1
if ARGV[5] ~= "" then
  now = tonumber(ARGV[5])
  minTtlMs = 60000
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- State: a bucket first seen now is full (token-bucket.ts `init`).
local tokens, last = capacity, now
local stored = redis.call("GET", KEYS[1])
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
if changed and op ~= "peek" then
  local restMs = (capacity - tokens) / rate
  if restMs > 0 then
    local ttl = math.floor(restMs) + 1
    if ttl < minTtlMs then ttl = minTtlMs end
    if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
    redis.call("SET", KEYS[1], fmt(tokens) .. " " .. fmt(last), "PX", ttl)
  elseif stored then
    redis.call("DEL", KEYS[1]) -- full again: the same as absent
  end
end

local resetAfterMs = (capacity - tokens) / rate
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
return {
  allowed and 1 or 0,
  fmt(math.floor(tokens + EPSILON)),
  fmt(resetAfterMs),
  fmt(retryAfterMs),
  fmt(now),
}
