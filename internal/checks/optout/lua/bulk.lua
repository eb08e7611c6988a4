-- bulkScript: KEYS[1] fingerprint counter (may be a dummy when ARGV[1] is
-- 0), KEYS[2] flag, KEYS[3] delivered, KEYS[4] complaints; ARGV rcpts,
-- fp ttl, cur, nb. Returns {fp count, flag fields, delivered, complaints}.
local fp = 0
local n = tonumber(ARGV[1])
if n > 0 then
  fp = redis.call('INCRBY', KEYS[1], n)
  if fp == n then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
local flag = redis.call('HGETALL', KEYS[2])
local cur, nb = tonumber(ARGV[3]), tonumber(ARGV[4])
return {fp, flag, rolling(KEYS[3], 0, cur, nb, 0), rolling(KEYS[4], 0, cur, nb, 0)}
