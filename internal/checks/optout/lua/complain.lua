-- complainScript records one complaint: KEYS recipient set, list, list
-- sources, complaint counter, then the dedupe records; ARGV check set
-- ("1"/"0"), tag, dedupe ttl (ms), entry hash, entry value, source, cur,
-- nb, counter ttl. Replies {status (0 counted, 1 duplicate, 2 not a
-- recipient), added}.
if ARGV[1] == '1' then
  local s = redis.call('GET', KEYS[1])
  if not s or not string.find(s, ',' .. ARGV[2] .. ',', 1, true) then return {2, 0} end
end
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {1, 0} end
end
for i = 5, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[3])
end
local added = redis.call('HSETNX', KEYS[2], ARGV[4], ARGV[5])
if added == 1 then redis.call('HINCRBY', KEYS[3], ARGV[6], 1) end
rolling(KEYS[4], 1, tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9])
return {0, added}
