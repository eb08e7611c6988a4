-- countScript: KEYS[1] counter; ARGV n, cur, nb, ttl.
return rolling(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
