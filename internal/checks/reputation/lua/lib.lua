-- lib.lua defines running_window, shared by totals.lua and record.lua:
-- it reads a customer's totals over the hourly buckets [lo, cur] in O(1)
-- Redis commands from the customer's running-total hash tk (rep:t, in the
-- customer's slot), which holds the totals of exactly the buckets [lo, hi]
-- of its fields 'lo' and 'hi' (record.lua adds each result it counts to
-- the bucket and to the total alike). It moves that range to the window:
-- it subtracts the buckets that left it and adds the buckets that entered
-- it since the last move (usually none; one an hour), reading only those,
-- and writes the hash back when the range moved and write is set (it is
-- not in a dry run). The hash is rebuilt from the window's buckets when
-- it is missing (the layout before it), unparsable, negative, older than
-- the buckets' TTL (a bucket it counts may have expired), or when moving it
-- would read more buckets than the window has (a long idle customer, a
-- changed window). pre is the buckets' key prefix (the hour number
-- follows); oldest the newest hour whose bucket may have expired. It
-- returns the window's totals and their fields in order.
local function running_window(tk, pre, lo, cur, write, ttl, oldest)
  local acc, order = {}, {}
  local function add(kv, sign)
    for j = 1, #kv, 2 do
      local f = kv[j]
      if f ~= 'lo' and f ~= 'hi' then
        local n = tonumber(kv[j + 1]) or 0
        if acc[f] == nil then
          acc[f] = 0
          order[#order + 1] = f
        end
        acc[f] = acc[f] + sign * n
      end
    end
  end
  local function buckets(a, b, sign)
    for h = a, b do add(redis.call('HGETALL', pre .. string.format('%d', h)), sign) end
  end
  local raw = redis.call('HGETALL', tk)
  local olo, ohi
  for j = 1, #raw, 2 do
    if raw[j] == 'lo' then olo = tonumber(raw[j + 1]) elseif raw[j] == 'hi' then ohi = tonumber(raw[j + 1]) end
  end
  local span = cur - lo + 1
  local rebuild = olo == nil or ohi == nil or ohi < olo - 1 or olo <= oldest
  if not rebuild then
    -- Buckets in [olo, ohi] but not in [lo, cur], and the reverse.
    local drop = math.max(0, math.min(ohi, lo - 1) - olo + 1) + math.max(0, ohi - math.max(olo, cur + 1) + 1)
    local take = math.max(0, math.min(cur, olo - 1) - lo + 1) + math.max(0, cur - math.max(lo, ohi + 1) + 1)
    if drop + take > span then
      rebuild = true
    else
      add(raw, 1)
      buckets(olo, math.min(ohi, lo - 1), -1)
      buckets(math.max(olo, cur + 1), ohi, -1)
      buckets(lo, math.min(cur, olo - 1), 1)
      buckets(math.max(lo, ohi + 1), cur, 1)
      for _, f in ipairs(order) do
        if acc[f] < 0 then rebuild = true end
      end
    end
  end
  if rebuild then
    acc, order = {}, {}
    buckets(lo, cur, 1)
  end
  if write and (rebuild or olo ~= lo or ohi ~= cur) then
    local hs = {'lo', string.format('%d', lo), 'hi', string.format('%d', cur)}
    for _, f in ipairs(order) do
      if acc[f] ~= 0 then
        hs[#hs + 1] = f
        hs[#hs + 1] = string.format('%d', acc[f])
      end
    end
    redis.call('DEL', tk)
    redis.call('HSET', tk, unpack(hs))
    redis.call('EXPIRE', tk, ttl)
  end
  return acc, order
end
