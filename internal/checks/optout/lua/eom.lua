-- eomProc: KEYS fingerprint counter (a dummy when ARGV[1] is 0), flag,
-- delivered, complaints; ARGV fp rcpts, fp ttl, cur, nb, delivered
-- ttl, delivered n, read: "1" when the message is bulk by its headers,
-- else the fingerprint threshold (the bulk state is read only when the
-- fingerprint count passes it). The delivered recipients are reserved
-- here and given back by finishProc when the message is refused.
-- Replies {fp count, flag fields, delivered, complaints} (the last three
-- only when read).
local fp = 0
local n = tonumber(ARGV[1])
if n > 0 then
  fp = redis.call('INCRBY', KEYS[1], n)
  if fp == n then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
local cur, nb = tonumber(ARGV[3]), tonumber(ARGV[4])
local d = tonumber(ARGV[6])
local read = ARGV[7] == '1' or (n > 0 and fp > tonumber(string.sub(ARGV[7], 2)))
if read then
  return {fp, redis.call('HGETALL', KEYS[2]), rolling(KEYS[3], d, cur, nb, ARGV[5]), rolling(KEYS[4], 0, cur, nb, 0)}
end
if d ~= 0 and redis.call('HINCRBY', KEYS[3], cur, d) == d then
  -- The bucket's first count: the bucket that just left the window goes
  -- now (any older one when the sums are next read), the expiry moves.
  redis.call('HDEL', KEYS[3], cur - nb)
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return {fp, {}, 0, 0}
