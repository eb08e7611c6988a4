-- rcptProc: KEYS customer list, opted-out counter, flag[, global list
-- (not on a Cluster: another slot)]; ARGV hash, cur, nb, ttl,
-- threshold, since. Replies {list (0 none, 1 customer, 2 global),
-- hits, raised}; the escalation is counted only for a listed
-- recipient.
local list = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  list = 1
elseif KEYS[4] ~= nil and redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  list = 2
end
if list == 0 then return {0, 0, 0} end
local sum = rolling(KEYS[2], 1, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
local th = tonumber(ARGV[5])
if th > 0 and sum >= th and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('HSET', KEYS[3], 'reason', 'opted_out_sends', 'since', ARGV[6], 'hits', sum)
  return {list, sum, 1}
end
return {list, sum, 0}
