-- Replaces a request's reservation with what it really spent (a failed request spends 0).
--
-- KEYS[1] the budget hash of the day the reservation was made
-- KEYS[2] the budget hash of the day the spend is charged to (the current UTC day)
-- ARGV    tokens reserved, USD reserved, tokens spent, USD spent, budget key lifetime (s)
local held, now = KEYS[1], KEYS[2]
local rt, ru = tonumber(ARGV[1]), tonumber(ARGV[2])
local t, u, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if rt > 0 then
  if redis.call('HINCRBY', held, 'rt', -rt) < 0 then redis.call('HSET', held, 'rt', 0) end
end
if ru > 0 then
  if tonumber(redis.call('HINCRBYFLOAT', held, 'ru', -ru)) < 0 then
    redis.call('HSET', held, 'ru', 0)
  end
end
if t > 0 then redis.call('HINCRBY', now, 't', t) end
if u > 0 then redis.call('HINCRBYFLOAT', now, 'u', u) end
redis.call('EXPIRE', held, ttl)
redis.call('EXPIRE', now, ttl)
return 1
