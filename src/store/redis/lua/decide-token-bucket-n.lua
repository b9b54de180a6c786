--[[
  decide-token-bucket-n.lua: token-bucket operations on n keys (n >= 1), atomically, in order.

  The same semantics and the same arithmetic, in the same order, as src/algorithms/token-bucket.ts
  (decide, peek, adjust) and src/limiter/key-blocks.ts: a bucket holds up to `capacity` tokens and
  refills continuously at `ratePerMs`; a hit of cost c is admitted when at least c tokens are
  present (with EPSILON slack), and takes them. The n hits of one call are decided one after the
  other at the same instant, exactly as n calls would be (a key may appear more than once);
  batching them saves a round trip and a TIME per hit.

  KEYS[i]    a bucket. A string "<tokens> <lastMs>" or "<tokens> <lastMs> <blockedUntilMs>" (each
             "%.17g", so doubles round-trip exactly; tokens below 0 after a charge), always written
             with SET ... PX: it expires the moment the bucket would be full again and any block
             has ended, when forgetting it changes no decision. Absent or unreadable: full, not
             blocked. Every op keeps a block in force; a block that has ended is dropped when the
             key is next written.
  ARGV[1]    op for every key:
             "consume"  decide and take the cost;
             "peek"     decide, write nothing;
             "refund"   refill, give the cost back up to `capacity`, then report as "peek" would;
             "charge"   refill, take the cost unconditionally (tokens may go below 0, so later
                        hits wait longer), then report as "peek" would;
             "block"    refuse every hit until now + cost (the cost slot is the duration, ms); a
                        longer block in force stays. Reports the refusal a blocked hit gets.
             While a key is blocked, "consume" and "peek" refuse without touching the bucket:
             {0, 0, rest of the block, rest of the block}.
  ARGV[2]    capacity (the rule's burst), a number > 0.
  ARGV[3]    ratePerMs (limit / windowMs), a number > 0.
  ARGV[4]    nowMs override. "" in production: the time is Redis `TIME`, so every client shares
             one clock. Tests of Lua/TypeScript agreement pass a number (ms) instead; expiries are
             then at least 60 s so keys outlive a test that drives time faster than real time.
  ARGV[4+i]  the cost of the op on KEYS[i], a number > 0.
  Returns    {allowed_1, remaining_1, resetAfterMs_1, retryAfterMs_1, allowed_2, ...}: allowed
             (0|1) and remaining as integers; the durations as strings ("%.17g", or "inf") since
             Redis truncates Lua numbers to integers, or the integer 0. An admitted hit's
             remaining and resetAfterMs are after its cost, for "peek" as for "consume".
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

-- Writes the bucket, kept until it is full again and its block (if any, in force) has ended.
local function save(key, stored, tokens, last, untilMs)
  local keepMs = (capacity - tokens) / rate
  if untilMs and untilMs - now > keepMs then keepMs = untilMs - now end
  if keepMs > 0 then
    local ttl = math.floor(keepMs) + 1
    if ttl < minTtlMs then ttl = minTtlMs end
    if ttl > MAX_TTL_MS then ttl = MAX_TTL_MS end
    local text = string.format("%.17g %.17g", tokens, last)
    if untilMs then text = text .. string.format(" %.17g", untilMs) end
    redis.call("SET", key, text, "PX", ttl)
  elseif stored then
    redis.call("DEL", key) -- full again and not blocked: the same as absent
  end
end

local out = {}
local function report(allowed, remaining, resetAfterMs, retryAfterMs)
  if remaining < 0 then remaining = 0 end
  if resetAfterMs < 0 then resetAfterMs = 0 end
  if retryAfterMs < 0 then retryAfterMs = 0 end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = ms(resetAfterMs)
  out[#out + 1] = ms(retryAfterMs)
end

for i = 1, #KEYS do
  local key = KEYS[i]
  local cost = tonumber(ARGV[4 + i])

  -- State: a bucket first seen now is full (token-bucket.ts `init`) and not blocked.
  local tokens, last, untilMs = capacity, now, nil
  local stored = redis.call("GET", key)
  if stored then
    local t, l, u = string.match(stored, "^(%S+) (%S+) ?(%S*)$")
    t, l, u = tonumber(t), tonumber(l), tonumber(u)
    if t and l then
      tokens, last = t, l
      if u and u > now then untilMs = u end
    end
  end

  if op == "block" then
    if untilMs == nil or untilMs < now + cost then untilMs = now + cost end
    save(key, stored, tokens, last, untilMs)
    report(false, 0, untilMs - now, untilMs - now)
  elseif untilMs and (op == "consume" or op == "peek") then
    report(false, 0, untilMs - now, untilMs - now)
  else
    -- Refill. A clock that stands still or goes back refills nothing and does not move `last`.
    -- The TypeScript decide() stores the refill even when it refuses, so this does too: the
    -- next refill then starts from the same numbers and the two stay equal to the last bit.
    local changed = false
    local elapsed = now - last
    if elapsed > 0 then
      tokens = tokens + elapsed * rate
      if tokens > capacity then tokens = capacity end
      last = now
      changed = true
    end

    local hit = cost -- the hit reported on: refund and charge report as peek would
    if op == "refund" or op == "charge" then
      if op == "refund" then tokens = tokens + cost else tokens = tokens - cost end
      if tokens > capacity then tokens = capacity end
      changed = true
    end

    local allowed = hit <= tokens + EPSILON
    local after = tokens -- what is left once an admitted hit took its cost
    if allowed then
      after = tokens - hit
      if after < 0 then after = 0 end
      if op == "consume" then
        tokens = after
        changed = true
      end
    end
    if changed and op ~= "peek" then save(key, stored, tokens, last, untilMs) end

    if untilMs then
      report(false, 0, untilMs - now, untilMs - now) -- refund or charge of a blocked key
    else
      local retryAfterMs = 0
      if not allowed then
        if hit > capacity + EPSILON then
          retryAfterMs = math.huge
        else
          retryAfterMs = (hit - tokens) / rate
        end
      end
      report(allowed, math.floor(after + EPSILON), (capacity - after) / rate, retryAfterMs)
    end
  end
end
return out
