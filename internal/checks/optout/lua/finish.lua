-- finishProc gives back what eomProc reserved for a refused message:
-- KEYS fingerprint counter (or a dummy), delivered; ARGV fp rcpts,
-- delivered bucket, delivered n.
local n = tonumber(ARGV[1])
if n > 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECRBY', KEYS[1], n) end
local d = tonumber(ARGV[3])
if d > 0 and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -d) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
return 0
