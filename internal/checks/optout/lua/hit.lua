-- hitScript: KEYS[1] opted-out counter, KEYS[2] flag; ARGV cur, nb, ttl,
-- threshold, since. Returns {sum, raised}.
local sum = rolling(KEYS[1], 1, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
local th = tonumber(ARGV[4])
if th > 0 and sum >= th and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'reason', 'opted_out_sends', 'since', ARGV[5], 'hits', sum)
  return {sum, 1}
end
return {sum, 0}
