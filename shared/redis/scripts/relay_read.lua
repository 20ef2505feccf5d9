-- relay_read: reads new outbox entries for the relay, only while the caller holds the shard's lease,
-- atomically with that check. A relay that was paused (SIGSTOP, GC, a stalled VM) past its lease
-- and resumes can then take no entry from under the new owner: a plain XREADGROUP it issues before
-- noticing the loss would move entries into its own PEL, where the new owner would find them only
-- at the next idle claim, after newer ones (out of order on Kafka). BLOCK is not allowed in scripts;
-- the relay waits for new entries with a plain XREAD (which takes nothing) and then calls this again.
-- KEYS[1] shard lease    <p>:{s}:outbox:relay-lease
-- KEYS[2] shard outbox   <p>:{s}:outbox
-- ARGV[1] group   ARGV[2] consumer (the lease holder's name)   ARGV[3] COUNT
-- Returns {0} when the lease is not the caller's (nothing read); {1, entries} with the XREADGROUP
-- entries; {2, lastId} when there is nothing new: lastId is the stream's newest id ("0-0" when empty),
-- from which XREAD BLOCK waits for the next one.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return { 0 }
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[2], '>')
if reply and reply[1] and #reply[1][2] > 0 then
  return { 1, reply[1][2] }
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
return { 2, last[1] and last[1][1] or '0-0' }
