-- rolling adds n to bucket cur of the hash key, drops buckets older than
-- nb, keeps the key alive for a window (ttl ms), and returns the window's sum.
local function rolling(key, n, cur, nb, ttl)
  if n ~= 0 then redis.call('HINCRBY', key, cur, n) end
  local all = redis.call('HGETALL', key)
  local sum = 0
  for i = 1, #all, 2 do
    local idx = tonumber(all[i])
    if idx <= cur - nb then
      redis.call('HDEL', key, all[i])
    else
      sum = sum + tonumber(all[i+1])
    end
  end
  if n ~= 0 then redis.call('PEXPIRE', key, ttl) end
  return sum
end
