--[[
  decide-gcra-n.lua: GCRA (leaky bucket as a meter) operations on n keys (n >= 1), atomically,
  in order.

  The same semantics and the same arithmetic, in the same order, as src/algorithms/gcra.ts
  (decide, peek, adjust) and src/limiter/key-blocks.ts: each unit of cost is spaced
  1 / ratePerMs apart on a virtual schedule whose end is the theoretical arrival time (TAT); a hit
  of cost c is admitted when, after adding c units, the schedule runs at most `capacity` units
  ahead of now. A refused hit leaves the state untouched. The n hits of one call are decided one
  after the other at the same instant, exactly as n calls would be (a key may appear more than
  once).

  KEYS[i]    a string "<tatMs>" or "<tatMs> <blockedUntilMs>" ("%.17g" each), always written with
             SET ... PX: it expires when the TAT passes and any block has ended, when forgetting
             it changes no decision. Absent or unreadable: TAT = now, not blocked. Every op keeps
             a block in force; a block that has ended is dropped when the key is next written.
  ARGV[1]    op for every key:
             "consume"  decide and take the cost;
             "peek"     decide, write nothing;
             "refund"   move the TAT back by the cost, never before now, then report as "peek"
                        would;
             "charge"   move the TAT on by the cost unconditionally (it may run past the
                        tolerance, so later hits wait longer), then report as "peek" would;
             "block"    refuse every hit until now + cost (the cost slot is the duration, ms); a
                        longer block in force stays. Reports the refusal a blocked hit gets.
             While a key is blocked, "consume" and "peek" refuse without touching the TAT:
             {0, 0, rest of the block, rest of the block}.
  ARGV[2]    capacity (the rule's burst), a number > 0.
  ARGV[3]    ratePerMs (limit / windowMs), a number > 0.
  ARGV[4]    nowMs override. "" in production: the time is Redis `TIME`, so every client shares
             one clock. Tests of Lua/TypeScript agreement pass a number (ms) instead; expiries are
             then at least 60 s so keys outlive a test that drives time faster than real time.
  ARGV[4+i]  the cost of the op on KEYS[i], a number > 0.
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

-- Writes the TAT, kept until it passes and its block (if any, in force) has ended.
local function save(key, stored, tat, untilMs)
  local keepMs = tat - now
  if untilMs and untilMs - now > keepMs then keepMs = untilMs - now end
  if keepMs > 0 then
    local ttl = math.floor(keepMs) + 1
    if ttl < minTtlMs then ttl = minTtlMs end
    if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
    local text = string.format("%.17g", tat)
    if untilMs then text = text .. string.format(" %.17g", untilMs) end
    redis.call("SET", key, text, "PX", ttl)
  elseif stored then
    redis.call("DEL", key) -- schedule drained and not blocked: the same as absent
  end
end

local out = {}
local function report(allowed, remaining, resetAfterMs, retryAfterMs)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = ms(resetAfterMs > 0 and resetAfterMs or 0)
  out[#out + 1] = ms(retryAfterMs > 0 and retryAfterMs or 0)
end

local emissionMs = 1 / rate
local toleranceMs = capacity * emissionMs
for i = 1, #KEYS do
  local key = KEYS[i]
  local cost = tonumber(ARGV[4 + i])
  local tat, untilMs = now, nil
  local stored = redis.call("GET", key)
  if stored then
    local t, u = string.match(stored, "^(%S+) ?(%S*)$")
    t, u = tonumber(t), tonumber(u)
    if t then
      tat = t
      if u and u > now then untilMs = u end
    end
  end

  if op == "block" then
    if untilMs == nil or untilMs < now + cost then untilMs = now + cost end
    save(key, stored, tat, untilMs)
    report(false, 0, untilMs - now, untilMs - now)
  elseif untilMs and (op == "consume" or op == "peek") then
    report(false, 0, untilMs - now, untilMs - now)
  else
    if op == "refund" or op == "charge" then
      -- gcra.ts `adjust`: a charge may push the schedule past the tolerance; a refund never
      -- pulls it before now.
      local signed = op == "charge" and cost or -cost
      local moved = (tat > now and tat or now) + signed / rate
      tat = moved > now and moved or now
      save(key, stored, tat, untilMs)
    end

    local base = tat > now and tat or now
    local newTat = base + cost * emissionMs
    -- Compare in cost units so the slack matches the other algorithms.
    local allowed = (newTat - now) * rate <= capacity + EPSILON
    local aheadMs
    if allowed then aheadMs = newTat - now else aheadMs = base - now end
    if allowed and op == "consume" then save(key, stored, newTat, nil) end

    if untilMs then
      report(false, 0, untilMs - now, untilMs - now) -- refund or charge of a blocked key
    else
      local retryAfterMs = 0
      if not allowed then
        if cost > capacity + EPSILON then
          retryAfterMs = math.huge
        else
          retryAfterMs = newTat - toleranceMs - now
        end
      end
      report(allowed, math.floor((toleranceMs - aheadMs) * rate + EPSILON), aheadMs, retryAfterMs)
    end
  end
end
return out
