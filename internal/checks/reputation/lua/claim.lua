-- claimScript sets notified on a listed state that is not notified yet.
if redis.call('HGET', KEYS[1], 'listed') == '1' and redis.call('HGET', KEYS[1], 'notified') ~= '1' then
  redis.call('HSET', KEYS[1], 'notified', '1')
  return 1
end
return 0
