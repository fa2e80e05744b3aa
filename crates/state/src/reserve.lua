-- Admits one request of a tenant, atomically: checks the day's budgets (spend plus the
-- reservations of requests in flight), optionally takes a token from the per-minute
-- bucket, and adds the request's reservation.
--
-- KEYS[1] the tenant's budget hash for the UTC day: t (tokens spent), u (USD spent),
--         rt, ru (tokens and USD reserved by requests in flight)
-- KEYS[2] the tenant's rate bucket: b (tokens left), at (microseconds, server clock)
-- ARGV    token limit, USD limit (-1: none), requests per minute (0: no rate check),
--         tokens to reserve, USD to reserve, budget key lifetime (s)
-- Returns {"ok"} | {"rate", seconds to wait} | {"tokens", spent, reserved}
--       | {"usd", spent, reserved}; numbers as strings (a Lua number would be truncated).
local budget, rate = KEYS[1], KEYS[2]
local token_limit, usd_limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
local add_tokens, add_usd, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local h = redis.call('HMGET', budget, 't', 'u', 'rt', 'ru')
local t, u = tonumber(h[1] or '0'), tonumber(h[2] or '0')
local rt, ru = tonumber(h[3] or '0'), tonumber(h[4] or '0')
if token_limit >= 0 and t + rt >= token_limit then
  return {'tokens', tostring(t), tostring(rt)}
end
if usd_limit >= 0 and u + ru >= usd_limit then
  return {'usd', tostring(u), tostring(ru)}
end

if rpm > 0 then
  local now = redis.call('TIME')
  local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local r = redis.call('HMGET', rate, 'b', 'at')
  local bucket = tonumber(r[1] or tostring(rpm))
  local at = tonumber(r[2] or tostring(micros))
  bucket = math.min(rpm, bucket + (micros - at) / 60000000 * rpm)
  if bucket < 1 then
    redis.call('HSET', rate, 'b', tostring(bucket), 'at', tostring(micros))
    redis.call('EXPIRE', rate, 120)
    return {'rate', tostring(math.ceil((1 - bucket) * 60 / rpm))}
  end
  redis.call('HSET', rate, 'b', tostring(bucket - 1), 'at', tostring(micros))
  redis.call('EXPIRE', rate, 120)
end

if add_tokens > 0 then redis.call('HINCRBY', budget, 'rt', add_tokens) end
if add_usd > 0 then redis.call('HINCRBYFLOAT', budget, 'ru', add_usd) end
redis.call('EXPIRE', budget, ttl)
return {'ok'}
