-- relay_lease_renew: extends a lease the caller still holds.
-- KEYS[1] shard lease   <p>:{s}:outbox:relay-lease
-- ARGV[1] consumer name   ARGV[2] lease ms
-- Returns 1 when renewed, 0 when the lease was lost (expired, or taken by another relay).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
