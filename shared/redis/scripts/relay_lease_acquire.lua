-- relay_lease_acquire: takes (or keeps) the lease on one shard's outbox, if nobody else holds it.
-- KEYS[1] shard lease          <p>:{s}:outbox:relay-lease
-- KEYS[2] shard lease holder   <p>:{s}:outbox:relay-holder (who last held it and did not release it cleanly; no TTL)
-- ARGV[1] consumer name   ARGV[2] lease ms
-- Returns {1, previous} when the caller holds the lease: previous is the relay named in the holder
-- record when that is another relay ("" otherwise). That relay lost the lease without releasing it
-- (died, or is paused and may resume mid-transaction), so the caller fences its Kafka producer before
-- it reads the shard, then records itself (relay_lease_confirm). {0} when another relay holds it.
-- The record is not changed here: until the caller has fenced the previous holder, a takeover by a
-- third relay must still fence that one.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local previous = redis.call('GET', KEYS[2])
  if previous == false or previous == ARGV[1] then
    previous = ''
  end
  return { 1, previous }
end
return { 0 }
