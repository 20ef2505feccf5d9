-- relay_delete_idle_consumers: removes consumers of the relay group that have nothing pending and
-- have been idle longer than ARGV[2] (dead relays with generated names would otherwise pile up in
-- XINFO CONSUMERS). Atomic, so a consumer that just read entries is never removed (that would
-- orphan its entries).
-- KEYS[1] shard outbox stream   <p>:{s}:outbox
-- ARGV[1] group name   ARGV[2] idle ms   ARGV[3] the caller's own consumer name (never removed)
-- Returns how many consumers were removed.
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if pending == 0 and idle > tonumber(ARGV[2]) and name ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
