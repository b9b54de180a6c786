--[[
  decide-gcra-n.lua: GCRA (leaky bucket as a meter) operations on n keys (n >= 1), atomically,
  in order.

  The same semantics and the same arithmetic, in the same order, as src/algorithms/gcra.ts: each
  unit of cost is spaced 1 / ratePerMs apart on a virtual schedule whose end is the theoretical
  arrival time (TAT); a hit of cost c is admitted when, after adding c units, the schedule runs at
  most `capacity` units ahead of now. A refused hit leaves the state untouched. The n hits of one
  call are decided one after the other at the same instant, exactly as n calls would be (a key
  may appear more than once).

  KEYS[i]    a TAT in ms, a string ("%.17g"), always written with SET ... PX: it expires when the
             TAT passes, when forgetting it changes no decision. Absent or unreadable: TAT = now.
  ARGV[1]    op for every key: "consume" (decide and take the cost), "peek" (decide, write
             nothing) or "refund" (move the TAT back by the cost, never before now, then report as
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

local function store(key, tat)
  local ttl = math.floor(tat - now) + 1
  if ttl < minTtlMs then ttl = minTtlMs end
  if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
  redis.call("SET", key, string.format("%.17g", tat), "PX", ttl)
end

local emissionMs = 1 / rate
local toleranceMs = capacity * emissionMs
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local cost = tonumber(ARGV[4 + i])
  local stored = redis.call("GET", key)
  local tat = stored and tonumber(stored) or now

  local consume = op == "consume"
  if op == "refund" then
    if tat > now then
      tat = tat - cost * emissionMs
      if tat > now then
        store(key, tat)
      else
        tat = now
        redis.call("DEL", key) -- schedule drained: the same as absent
      end
    end
  end

  local base = tat > now and tat or now
  local newTat = base + cost * emissionMs
  -- Compare in cost units so the slack matches the other algorithms.
  local allowed = (newTat - now) * rate <= capacity + EPSILON
  local aheadMs
  if allowed then aheadMs = newTat - now else aheadMs = base - now end
  if allowed and consume then store(key, newTat) end

  local retryAfterMs = 0
  if not allowed then
    if cost > capacity + EPSILON then
      retryAfterMs = math.huge
    else
      retryAfterMs = newTat - toleranceMs - now
    end
  end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = math.floor((toleranceMs - aheadMs) * rate + EPSILON)
  out[#out + 1] = ms(aheadMs > 0 and aheadMs or 0)
  out[#out + 1] = ms(retryAfterMs > 0 and retryAfterMs or 0)
end
return out
