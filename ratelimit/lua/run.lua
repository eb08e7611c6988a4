-- aupguard ratelimit: all of one stage's counter work for one customer, in
-- one round trip. The semantics are those of memory.go, which is the
-- reference; the shared table test runs both.
--
-- KEYS: the customer's keys (one hash tag, so one Cluster slot).
-- ARGV[1]: mode: "check" (evaluate only), "reserve" (apply when every limit
--          allows), "force" (apply in any case: monitor mode), "usage"
--          (evaluate n=1 and report use; writes nothing).
-- ARGV[2]: now in ms, or "" to use Redis TIME (production: MTAs with skewed
--          clocks agree).
-- ARGV[3..]: 8 fields per op: kind, key index, name, a, b, c, d, e
--   rate      a=limit b=period_ms c=n
--   window    a=limit b=period_ms c=n d=bucket_ms
--   recipient a=limit b=period_ms c=n d=field|G e=keep_ms (keys: G-1, G, G+1)
--   spike     a=factor b=window_ms c=n d=floor|baseline e=alpha (keys: base, base+1=win)
-- Returns {allowed, binding op (1-based, 0 none), retry_ms, now_ms,
--          then 4 strings per op}.

local mode = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  now = store_now() -- the batch's one TIME (internal/store/batch.go)
end

local EPS = 0.5 -- half a millisecond of float slack, as memory.go
local HOUR, MINUTE = 3600000, 60000

local function fmt(x) return string.format('%.3f', x) end

-- GCRA (ITU-T I.371 virtual scheduling): tat is the theoretical arrival
-- time; a burst of `limit` is allowed, then one unit per period/limit.
local function rate_eval(op)
  local L, P, n = tonumber(op.a), tonumber(op.b), tonumber(op.c)
  local T = P / L
  local tat = tonumber(redis.call('GET', op.key) or '0')
  if tat < now then tat = now end
  local new = tat + n * T
  local ok = (new - now) <= P + EPS
  local retry = 0
  if not ok then retry = math.ceil(new - P - now) end
  local used = math.ceil((tat - now) / T - 1e-9)
  local nxt = 0
  if used >= L then nxt = math.ceil(tat + T - P - now) end
  return ok, retry, {tostring(used), tostring(math.ceil(tat - now)), tostring(nxt), '0'}, new
end

local function rate_apply(op, new)
  local v = tonumber(fmt(new))
  redis.call('SET', op.key, fmt(v), 'PX', math.max(1, math.ceil(v - now) + 1))
end

-- Bucketed sliding window: buckets of bucket_ms; every bucket that
-- intersects (now-period, now] is counted in full, so the count errs only
-- upwards, by at most one bucket. Besides the buckets (numeric fields) the
-- hash keeps a running total 't' of the buckets present, 'lo' the lowest
-- bucket still counted when it was last written and 'hi' the newest bucket
-- written: a message reads three fields and the buckets that left the
-- window since (usually none), instead of summing 144 buckets.
local function window_scan(op)
  local B = tonumber(op.d)
  local P = tonumber(op.b)
  local lo = math.floor((now - P) / B)
  local raw = redis.call('HGETALL', op.key)
  local idx, cnt, stale = {}, {}, {}
  local sum = 0
  for i = 1, #raw, 2 do
    local j, c = tonumber(raw[i]), tonumber(raw[i + 1])
    if j == nil then
      -- t, lo, hi
    elseif j < lo then
      stale[#stale + 1] = raw[i]
    elseif c > 0 then
      idx[#idx + 1] = j
      cnt[j] = c
      sum = sum + c
    end
  end
  table.sort(idx)
  return B, P, sum, idx, cnt, stale
end

local function window_free_after(B, P, idx, cnt, need)
  if need <= 0 then return 0 end
  local acc = 0
  for _, j in ipairs(idx) do
    acc = acc + cnt[j]
    if acc >= need then return (j + 1) * B + P - now end
  end
  return P
end

-- window_total returns the window's sum from the running total, and the
-- buckets that left the window (nil when the total must be rebuilt).
local function window_total(op)
  local B, P = tonumber(op.d), tonumber(op.b)
  local lo = math.floor((now - P) / B)
  local m = redis.call('HMGET', op.key, 't', 'lo', 'hi')
  local t, olo, hi = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  if t == nil or olo == nil or hi == nil or lo - olo > 200 then return nil end
  local stale = {}
  if olo < lo then
    local ids = {}
    for j = olo, math.min(lo - 1, hi) do ids[#ids + 1] = tostring(j) end
    if #ids > 0 then
      local v = redis.call('HMGET', op.key, unpack(ids))
      for i = 1, #ids do
        if v[i] then
          t = t - tonumber(v[i])
          stale[#stale + 1] = ids[i]
        end
      end
    end
  end
  return t, stale, hi
end

local function window_eval(op)
  local L, n = tonumber(op.a), tonumber(op.c)
  local B, P = tonumber(op.d), tonumber(op.b)
  local cur = math.floor(now / B)
  if mode ~= 'usage' then
    local sum, stale, hi = window_total(op)
    if sum ~= nil and sum + n <= L and sum + 1 <= L then
      -- The common case: room left. Reset from the newest bucket.
      local reset = 0
      if sum > 0 then reset = (hi + 1) * B + P - now end
      return true, 0, {tostring(sum), tostring(reset), '0', tostring(cur)}, {sum, stale, hi}
    end
  end
  local _, _, sum, idx, cnt, stale = window_scan(op)
  local ok = sum + n <= L
  local retry = 0
  if not ok then retry = window_free_after(B, P, idx, cnt, sum + n - L) end
  local reset = 0
  if #idx > 0 then reset = (idx[#idx] + 1) * B + P - now end
  local nxt = window_free_after(B, P, idx, cnt, sum + 1 - L)
  return ok, retry, {tostring(sum), tostring(reset), tostring(nxt), tostring(cur)}, {sum, stale}
end

-- The bucket and the total grow together; the window's bounds and the
-- key's expiry change only with the bucket (once per bucket_ms): an expiry
-- set at a bucket's first write outlives the bucket's time in the window.
local function window_apply(op, st)
  local B, P, n = tonumber(op.d), tonumber(op.b), tonumber(op.c)
  local cur = math.floor(now / B)
  local lo = math.floor((now - P) / B)
  local sum, stale, hi = st[1], st[2], st[3]
  if #stale > 0 then redis.call('HDEL', op.key, unpack(stale)) end
  redis.call('HINCRBY', op.key, tostring(cur), n)
  if hi == cur and #stale == 0 then
    redis.call('HINCRBY', op.key, 't', n)
  else
    redis.call('HSET', op.key, 't', tostring(sum + n), 'lo', tostring(lo), 'hi', tostring(cur))
    redis.call('PEXPIRE', op.key, P + 2 * B)
  end
end

-- Sliding window over the send times to one recipient, in slots (the
-- method and its bounds: recipient.go, the reference). A customer's
-- recipients are kept in hashes by generation (now / keep) and shard: the
-- field is the recipient's 8-byte key, the value a version byte (1) then
-- 6 bytes per slot: the time of its latest send (ms since the start of
-- the previous generation, 4 bytes) and its sends (2 bytes). A value of
-- even length was written before slots: 4-byte times, one send each. A
-- recipient written in generation g moves out of g-1; what is left in g-1
-- expires with its key.
-- op.key/key2/key3: the shard's hashes of generations G-1, G and G+1 by the
-- gateway's clock; op.d = field|G[|reserved time, release only].
local FINE, COARSE, COARSE_AGE, MAXN = 60000, 600000, 3600000, 65535
local rstate = {}
local function rcpt_keys(op, keep)
  -- The field is 8 bytes of binary (it may hold any byte, '|' too).
  local field = string.sub(op.d, 1, 8)
  local G = tonumber(string.match(string.sub(op.d, 10), '^(%d+)'))
  local g = math.floor(now / keep)
  if g == G + 1 then return field, g, op.key3, op.key2 end
  if g == G - 1 then return field, g, op.key, nil end
  return field, g, op.key2, op.key
end

-- rcpt_unpack appends a value's slots to ts (times) and ns (sends); it
-- reports whether the value was in the slot format.
local function rcpt_unpack(ts, ns, v, base)
  if not v then return false end
  if #v % 2 == 0 then
    for i = 1, #v - 3, 4 do
      ts[#ts + 1] = base + struct.unpack('>I4', v, i)
      ns[#ns + 1] = 1
    end
    return false
  end
  for i = 2, #v - 5, 6 do
    local t, n = struct.unpack('>I4I2', v, i)
    ts[#ts + 1] = base + t
    ns[#ns + 1] = n
  end
  return true
end

local function rcpt_load(op)
  local keep = tonumber(op.e)
  local field, g, cur, prev = rcpt_keys(op, keep)
  local id = cur .. '|' .. field
  local st = rstate[id]
  if st then return st end
  local ts, ns = {}, {}
  local raw = redis.call('HGET', cur, field)
  local slotted = rcpt_unpack(ts, ns, raw, (g - 1) * keep)
  local inprev = false
  if prev then
    local pv = redis.call('HGET', prev, field)
    if pv then
      inprev = true
      rcpt_unpack(ts, ns, pv, (g - 2) * keep)
      local idx = {}
      for i = 1, #ts do idx[i] = i end
      table.sort(idx, function(x, y) return ts[x] < ts[y] end)
      local sts, sns = {}, {}
      for i, j in ipairs(idx) do sts[i], sns[i] = ts[j], ns[j] end
      ts, ns = sts, sns
    end
  end
  -- raw is kept to rewrite only what changed (rcpt_store).
  if not slotted or inprev then raw = nil end
  st = {ts = ts, ns = ns, raw = raw, field = field, g = g, cur = cur, prev = prev, inprev = inprev, keep = keep}
  rstate[id] = st
  return st
end

-- rcpt_add records a send at now (recipient.go, rcptAdd and rcptCompact:
-- slots past keep dropped, those an hour old merged by ten minutes, the
-- send joining the newest slot of its minute). It returns the new slots
-- and how many old ones are unchanged at their head (dropped ones aside).
local function rcpt_add(st)
  local ts, ns = st.ts, st.ns
  local old, lo = now - COARSE_AGE, now - st.keep
  local ots, ons, m = {}, {}, 0
  local first = nil -- index in ts of the first slot kept
  for i = 1, #ts do
    local t, n = ts[i], ns[i]
    if t > lo then
      if first == nil then first = i end
      if m > 0 and t <= old and ots[m] <= old and math.floor(ots[m] / COARSE) == math.floor(t / COARSE)
          and ons[m] + n <= MAXN then
        ots[m], ons[m] = t, ons[m] + n
      else
        m = m + 1
        ots[m], ons[m] = t, n
      end
    end
  end
  if m > 0 and math.floor(ots[m] / FINE) == math.floor(now / FINE) and ons[m] < MAXN then
    ots[m] = math.max(ots[m], now)
    ons[m] = ons[m] + 1
  else
    m = m + 1
    ots[m], ons[m] = now, 1
  end
  local same = 0
  if first then
    while same < m and first + same <= #ts and ts[first + same] == ots[same + 1] and ns[first + same] == ons[same + 1] do
      same = same + 1
    end
  end
  return ots, ons, first, same
end

local function rcpt_store(st, first, same)
  local base = (st.g - 1) * st.keep
  local parts, from = {'\1'}, 1
  if st.raw and same > 0 then
    -- The unchanged slots are copied as they are stored.
    parts[2] = string.sub(st.raw, 2 + 6 * (first - 1), 1 + 6 * (first - 1 + same))
    from = same + 1
  end
  for i = from, #st.ts do parts[#parts + 1] = struct.pack('>I4I2', st.ts[i] - base, st.ns[i]) end
  if #st.ts > 0 then
    -- A new field (a recipient new in this generation) sets the key's
    -- expiry, the same for every field of the generation.
    if redis.call('HSET', st.cur, st.field, table.concat(parts)) == 1 then
      redis.call('PEXPIREAT', st.cur, (st.g + 2) * st.keep)
    end
  else
    redis.call('HDEL', st.cur, st.field)
  end
  if st.inprev then
    redis.call('HDEL', st.prev, st.field)
    st.inprev = false
  end
end

local function recipient_eval(op)
  local L, P = tonumber(op.a), tonumber(op.b)
  local st = rcpt_load(op)
  local ts, ns = st.ts, st.ns
  local since = now - P
  local count = 0
  for i = 1, #ts do
    if ts[i] > since then count = count + ns[i] end
  end
  local ok = count + 1 <= L
  local retry = 0
  if not ok then
    local need, acc = count + 1 - L, 0
    retry = P
    for i = 1, #ts do
      if ts[i] > since then
        acc = acc + ns[i]
        if acc >= need then
          retry = ts[i] + P - now
          break
        end
      end
    end
  end
  return ok, retry, {tostring(count), '0', tostring(retry), tostring(now)}
end

local function recipient_apply(op)
  local st = rcpt_load(op)
  if st.applied then return end -- the hour and the day limit share one send
  st.applied = true
  local first, same
  st.ts, st.ns, first, same = rcpt_add(st)
  rcpt_store(st, first, same)
end

-- Spike detection: see the package documentation (doc.go).
local function slot_of(hour) return (hour + 72) % 168 end -- 0 = Monday 00h UTC

local function spike_params(op)
  local floor, base = string.match(op.d, '^([^|]+)|(.+)$')
  return tonumber(op.a), tonumber(op.b), tonumber(op.c), tonumber(floor), tonumber(base), tonumber(op.e)
end

local function spike_run(op, write)
  local factor, W, n, floor, dflt, alpha = spike_params(op)
  local basekey, winkey = op.key, op.key2
  local hour, minute, wmin = math.floor(now / HOUR), math.floor(now / MINUTE), W / MINUTE
  local raw = redis.call('HGETALL', winkey)
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  local h0, c0 = tonumber(f['h']), tonumber(f['c'] or '0')
  local clipfloor = floor * 60 / wmin
  if write and h0 ~= nil and h0 < hour then
    if hour - h0 > 4 * 168 then
      redis.call('DEL', basekey)
    else
      local braw = redis.call('HGETALL', basekey)
      local b = {}
      for i = 1, #braw, 2 do b[tonumber(braw[i])] = tonumber(braw[i + 1]) end
      local touched = {}
      for x = h0, hour - 1 do
        local s = slot_of(x)
        local old = b[s] or dflt
        local cnt = 0
        if x == h0 then cnt = c0 end
        local clip = math.max(factor * old, clipfloor)
        if cnt > clip then cnt = clip end
        b[s] = tonumber(fmt((1 - alpha) * old + alpha * cnt))
        touched[s] = true
      end
      local args = {}
      for s, _ in pairs(touched) do
        args[#args + 1] = tostring(s)
        args[#args + 1] = fmt(b[s])
      end
      redis.call('HSET', basekey, unpack(args))
    end
    redis.call('PEXPIRE', basekey, 35 * 24 * HOUR)
    c0 = 0
  end
  local count = n
  local stale = {}
  for k, v in pairs(f) do
    local m = tonumber(string.match(k, '^m(%d+)$'))
    if m ~= nil then
      if m > minute - wmin then count = count + tonumber(v) else stale[#stale + 1] = k end
    end
  end
  -- The baseline changes only when an hour is folded in: it is read from
  -- the baseline hash once per hour and kept in the window hash ('b', for
  -- hour 'bh' and default 'bd'), not read for every message.
  local baseline = tonumber(f['b'])
  local cached = baseline ~= nil and f['bh'] == tostring(hour) and f['bd'] == op.d
  if not cached then
    local s = slot_of(hour)
    local sl = redis.call('HMGET', basekey, tostring((s + 167) % 168), tostring(s), tostring((s + 1) % 168))
    baseline = 0
    for i = 1, 3 do
      local v = tonumber(sl[i]) or dflt
      if v > baseline then baseline = v end
    end
  end
  local threshold = math.max(floor, factor * baseline * wmin / 60)
  local flagged = 0
  if count > threshold then flagged = 1 end
  if write then
    if #stale > 0 then redis.call('HDEL', winkey, unpack(stale)) end
    if h0 == nil or h0 < hour then
      redis.call('HSET', winkey, 'h', tostring(hour), 'c', tostring(n))
    else
      redis.call('HINCRBY', winkey, 'c', n)
    end
    local inmin = redis.call('HINCRBY', winkey, 'm' .. tostring(minute), n)
    if not cached then
      redis.call('HSET', winkey, 'b', fmt(baseline), 'bh', tostring(hour), 'bd', op.d)
    end
    if inmin == n then
      -- The minute's first message: the expiry moves once a minute.
      redis.call('PEXPIRE', winkey, 8 * 24 * HOUR)
    end
  end
  return {tostring(flagged), tostring(count), fmt(threshold), fmt(baseline)}
end

local ops = {}
local nops = (#ARGV - 2) / 8
for i = 0, nops - 1 do
  local b = 2 + i * 8
  local ki = tonumber(ARGV[b + 2])
  ops[i + 1] = {kind = ARGV[b + 1], key = KEYS[ki], key2 = KEYS[ki + 1], key3 = KEYS[ki + 2], name = ARGV[b + 3],
    a = ARGV[b + 4], b = ARGV[b + 5], c = ARGV[b + 6], d = ARGV[b + 7], e = ARGV[b + 8]}
end

local allowed, binding, retry = 1, 0, 0
local out, aux = {}, {}
for i, op in ipairs(ops) do
  local ok, r, res, x = true, 0, {'0', '0', '0', '0'}, nil
  if op.kind == 'rate' then
    ok, r, res, x = rate_eval(op)
  elseif op.kind == 'window' then
    ok, r, res, x = window_eval(op)
  elseif op.kind == 'recipient' then
    ok, r, res = recipient_eval(op)
  elseif op.kind == 'spike' and mode == 'usage' then
    res = spike_run(op, false)
  end
  if not ok then
    allowed = 0
    if binding == 0 or r > retry then binding, retry = i, r end
  end
  out[i], aux[i] = res, x
end

if mode == 'force' or (mode == 'reserve' and allowed == 1) then
  for i, op in ipairs(ops) do
    if op.kind == 'rate' then
      rate_apply(op, aux[i])
    elseif op.kind == 'window' then
      window_apply(op, aux[i])
    elseif op.kind == 'recipient' then
      recipient_apply(op)
    elseif op.kind == 'spike' then
      out[i] = spike_run(op, true)
    end
  end
end

local reply = {allowed, binding, retry, now}
for i = 1, #ops do
  for j = 1, 4 do reply[#reply + 1] = out[i][j] end
end
return reply
