-- aupguard ratelimit: give back what a reservation took (the message was
-- refused, deferred or aborted, or one of its recipients was refused by a
-- later check). Same op encoding as run.lua; memory.go is the reference.
-- ARGV[1]: now in ms, or "" for Redis TIME.
-- ARGV[2..]: 8 fields per op: kind, key index, name, a, b, c, d, e
--   rate      a=limit b=period_ms c=n
--   window    c=n d=bucket index the reservation went to
--   recipient d=field|G|time of the reservation, e=keep_ms
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  now = store_now() -- the batch's one TIME (internal/store/batch.go)
end
local done = {}
local nops = (#ARGV - 1) / 8
for i = 0, nops - 1 do
  local b = 1 + i * 8
  local kind, key = ARGV[b + 1], KEYS[tonumber(ARGV[b + 2])]
  local a, p, n, d = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), ARGV[b + 7]
  if kind == 'rate' then
    local tat = tonumber(redis.call('GET', key) or '0')
    local new = tonumber(string.format('%.3f', tat - n * p / a))
    if new <= now then
      redis.call('DEL', key)
    else
      redis.call('SET', key, string.format('%.3f', new), 'PX', math.max(1, math.ceil(new - now) + 1))
    end
  elseif kind == 'window' then
    -- The bucket and the running total together (run.lua).
    if redis.call('HEXISTS', key, d) == 1 then
      local left = redis.call('HINCRBY', key, d, -n)
      if left <= 0 then redis.call('HDEL', key, d) end
      if redis.call('HEXISTS', key, 't') == 1 then
        local t = redis.call('HINCRBY', key, 't', -n - math.min(left, 0))
        if t < 0 then redis.call('HSET', key, 't', 0) end
      end
    end
  elseif kind == 'recipient' then
    -- d = field|G|time: take one send made at that time out of the
    -- recipient's slots (run.lua; recipient.go, rcptRemove: the first slot
    -- whose time is not before it), once for the hour and day limits.
    local field = string.sub(d, 1, 8)
    local G, at = string.match(string.sub(d, 10), '^(%d+)|(%d+)$')
    if field and not done[field .. at] then
      done[field .. at] = true
      G, at = tonumber(G), tonumber(at)
      local keep = tonumber(ARGV[b + 8])
      local k1, k2, k3 = KEYS[tonumber(ARGV[b + 2])], KEYS[tonumber(ARGV[b + 2]) + 1], KEYS[tonumber(ARGV[b + 2]) + 2]
      local cands = {{k2, G}, {k1, G - 1}, {k3, G + 1}}
      for _, c in ipairs(cands) do
        local v = redis.call('HGET', c[1], field)
        if v then
          local base = (c[2] - 1) * keep
          local slots = {}
          if #v % 2 == 0 then
            for i = 1, #v - 3, 4 do slots[#slots + 1] = {struct.unpack('>I4', v, i), 1} end
          else
            for i = 2, #v - 5, 6 do
              local t, cnt = struct.unpack('>I4I2', v, i)
              slots[#slots + 1] = {t, cnt}
            end
          end
          local hit = nil
          for i, x in ipairs(slots) do
            if base + x[1] >= at then
              hit = i
              break
            end
          end
          if hit then
            slots[hit][2] = slots[hit][2] - 1
            local parts = {'\1'}
            for _, x in ipairs(slots) do
              if x[2] > 0 then parts[#parts + 1] = struct.pack('>I4I2', x[1], x[2]) end
            end
            if #parts > 1 then redis.call('HSET', c[1], field, table.concat(parts)) else redis.call('HDEL', c[1], field) end
            break
          end
        end
      end
    end
  end
end
return nops
