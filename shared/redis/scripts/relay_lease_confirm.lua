-- relay_lease_confirm: after the caller fenced the previous holder (and its own producer is
-- initialised), checks that the lease is still the caller's, renews it and records the caller as
-- the holder to fence on a takeover. Checked after the fence, so a relay paused between acquiring
-- and fencing, past its lease, finds out here and reads nothing.
-- KEYS[1] shard lease          <p>:{s}:outbox:relay-lease
-- KEYS[2] shard lease holder   <p>:{s}:outbox:relay-holder
-- ARGV[1] consumer name   ARGV[2] lease ms
-- Returns 1 when confirmed, 0 when the lease is not the caller's any more.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 1
