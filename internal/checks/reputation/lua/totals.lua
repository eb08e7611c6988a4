-- totalsProc reads a customer's totals over its bounce window inside the
-- end-of-message batch (no round trip of its own) from the running total
-- (running_window): KEYS[1] the running-total hash; ARGV: the buckets' key
-- prefix, the window's first and last hours, write (1, or 0 in a dry run:
-- nothing is written), the hash's TTL in seconds, and the newest hour
-- whose bucket may have expired. It replies a flat list {field, total,
-- ...} of the non-zero totals; totals are strings, as Lua numbers are
-- floats.
local acc, order = running_window(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[4] == '1', ARGV[5], tonumber(ARGV[6]))
local out = {}
for _, f in ipairs(order) do
  if acc[f] ~= 0 then
    out[#out + 1] = f
    out[#out + 1] = string.format('%d', acc[f])
  end
end
return out
