-- observeScript applies one query outcome to a listing: KEYS[1] state,
-- KEYS[2] history. ARGV: answered (1/0), listed (1/0), codes (comma
-- separated), now (unix ms), error, history length. It returns the state
-- before and after as two flat field lists.
local before = redis.call('HGETALL', KEYS[1])
local known = redis.call('HGET', KEYS[1], 'known')
local listed = redis.call('HGET', KEYS[1], 'listed')
redis.call('HSET', KEYS[1], 'checked', ARGV[4], 'error', ARGV[5])
if ARGV[1] == '1' then
  if known ~= '1' or listed ~= ARGV[2] then
    redis.call('HSET', KEYS[1], 'known', '1', 'listed', ARGV[2], 'since', ARGV[4], 'notified', '0')
    redis.call('LPUSH', KEYS[2], ARGV[4] .. '|' .. ARGV[2] .. '|' .. ARGV[3])
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
  end
  if ARGV[2] == '1' then
    redis.call('HSET', KEYS[1], 'codes', ARGV[3])
  else
    redis.call('HSET', KEYS[1], 'codes', '')
  end
end
return {before, redis.call('HGETALL', KEYS[1])}
