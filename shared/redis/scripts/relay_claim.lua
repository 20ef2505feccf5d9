-- relay_claim: moves to the caller the outbox entries pending on other consumers for at least
-- ARGV[3] ms (XAUTOCLAIM … JUSTID), only while the caller holds the shard's lease, atomically with
-- that check. Used when a relay acquires a shard (min idle 0: everything its previous owner left)
-- and by the periodic idle claim. A relay that was paused (SIGSTOP, GC, a stalled VM) past its lease
-- and resumes at its claim would otherwise take the entries the new owner is working on, and send
-- them after newer ones (out of order on Kafka): test/relay-claim-fencing.test.ts.
-- KEYS[1] shard lease    <p>:{s}:outbox:relay-lease
-- KEYS[2] shard outbox   <p>:{s}:outbox
-- ARGV[1] group   ARGV[2] consumer (the lease holder's name)   ARGV[3] min idle ms
-- ARGV[4] start id (XAUTOCLAIM's cursor, '0-0' at first)        ARGV[5] COUNT
-- Returns {0} when the lease is not the caller's (nothing claimed); {1, next cursor, number claimed}
-- ('0-0' as next cursor when the pending list has been scanned to its end).
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return { 0 }
end
local reply = redis.call('XAUTOCLAIM', KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5], 'JUSTID')
return { 1, reply[1], #reply[2] }
