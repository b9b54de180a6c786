--[[
  decide-gcra-1.lua: one GCRA (leaky bucket as a meter) operation on one key, atomically.

  The same semantics and the same arithmetic, in the same order, as src/algorithms/gcra.ts: each
  unit of cost is spaced 1 / ratePerMs apart on a virtual schedule whose end is the theoretical
  arrival time (TAT); a hit of cost c is admitted when, after adding c units, the schedule runs at
  most `capacity` units ahead of now. A refused hit leaves the state untouched.

  KEYS[1]  the TAT in ms, a string ("%.17g"), always written with SET ... PX: it expires when the
           TAT passes, when forgetting it changes no decision. Absent or unreadable: TAT = now.
  ARGV[1]  op: "consume" (decide and take the cost), "peek" (decide, write nothing) or "refund"
           (move the TAT back by `cost` units, never before now, then report as "peek" would).
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

local function store(tat)
  local ttl = math.floor(tat - now) + 1
  if ttl < minTtlMs then ttl = minTtlMs end
  if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
  redis.call("SET", KEYS[1], fmt(tat), "PX", ttl)
end

local emissionMs = 1 / rate
local toleranceMs = capacity * emissionMs
local stored = redis.call("GET", KEYS[1])
local tat = stored and tonumber(stored) or now

if op == "refund" then
  if tat > now then
    tat = tat - cost * emissionMs
    if tat > now then
      store(tat)
    else
      tat = now
      redis.call("DEL", KEYS[1]) -- schedule drained: the same as absent
    end
  end
  op = "peek"
end

local base = tat > now and tat or now
local newTat = base + cost * emissionMs
-- Compare in cost units so the slack matches the other algorithms.
local allowed = (newTat - now) * rate <= capacity + EPSILON
local aheadMs
if allowed then aheadMs = newTat - now else aheadMs = base - now end
if allowed and op == "consume" then store(newTat) end

local retryAfterMs = 0
if not allowed then
  if cost > capacity + EPSILON then
    retryAfterMs = math.huge
  else
    retryAfterMs = newTat - toleranceMs - now
  end
end
return {
  allowed and 1 or 0,
  fmt(math.floor((toleranceMs - aheadMs) * rate + EPSILON)),
  fmt(aheadMs > 0 and aheadMs or 0),
  fmt(retryAfterMs > 0 and retryAfterMs or 0),
  fmt(now),
}
