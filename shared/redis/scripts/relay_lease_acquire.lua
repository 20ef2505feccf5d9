-- relay_lease_acquire: takes (or keeps) the lease on one shard's outbox, if nobody else holds it.
-- KEYS[1] shard lease   <p>:{s}:outbox:relay-lease
-- ARGV[1] consumer name   ARGV[2] lease ms
-- Returns 1 when the caller holds the lease, 0 when another relay does.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
