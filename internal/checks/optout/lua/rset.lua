-- rsetProc stores a message's recipient set in the end-of-message batch:
-- KEYS the set; ARGV blob, ttl (ms).
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 0
