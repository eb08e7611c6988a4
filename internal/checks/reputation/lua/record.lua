-- recordScript counts one result once: KEYS[1] the seen set, KEYS[2] the
-- current hour's bucket, KEYS[3] the running-total hash (see runningLua).
-- ARGV: member, field, egress field ("" for none), seen TTL, bucket TTL
-- (seconds), the current hour, the window's first and last hours, the
-- buckets' key prefix, the newest hour whose bucket may have expired. It
-- moves the running total to the window first, so that it holds the
-- current hour's bucket, then counts a new result in the bucket and in
-- the total alike: the total stays the exact sum of its buckets. It
-- replies {counted, sent, hard, policy, other, deferred} over the window.
local counted = redis.call('SADD', KEYS[1], ARGV[1])
local cur, lo, hi = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local acc = running_window(KEYS[3], ARGV[9], lo, hi, true, ARGV[5], tonumber(ARGV[10]))
if counted == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  if lo <= cur and cur <= hi then
    redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
    if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[3], 1) end
    acc[ARGV[2]] = (acc[ARGV[2]] or 0) + 1
  end
end
local out = {counted}
for _, f in ipairs({'s', 'h', 'p', 'o', 'd'}) do out[#out + 1] = acc[f] or 0 end
return out
