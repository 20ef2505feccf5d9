-- relay_read_pending: reads the caller's own pending entries of a shard's outbox after id ARGV[4]
-- (oldest first), only while the caller holds the shard's lease, atomically with that check. With
-- ARGV[5] = '1' (RELAY_MIN_REPLICAS > 0) the entries read are also claimed to the caller (XCLAIM …
-- JUSTID, idle reset): a history read writes nothing, and the relay's WAIT needs a write of its own
-- connection that comes after those entries in the replication stream. In one script, a relay that
-- resumes after a pause past its lease cannot take back entries the new owner claimed meanwhile
-- (a read, then a separate XCLAIM, could: test/relay-claim-fencing.test.ts).
-- KEYS[1] shard lease    <p>:{s}:outbox:relay-lease
-- KEYS[2] shard outbox   <p>:{s}:outbox
-- ARGV[1] group   ARGV[2] consumer (the lease holder's name)   ARGV[3] COUNT
-- ARGV[4] read after this id ('0-0': from the oldest)   ARGV[5] '1' to claim what was read, '0' not to
-- Returns {0} when the lease is not the caller's (nothing read); {1, entries} with the XREADGROUP
-- entries (an entry deleted from the stream comes with nil fields, as XREADGROUP gives it).
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return { 0 }
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[2], ARGV[4])
local entries = (reply and reply[1] and reply[1][2]) or {}
if ARGV[5] == '1' and #entries > 0 then
  -- In slices: unpack() of more than a few thousand values overflows Lua's C stack.
  for first = 1, #entries, 1000 do
    local ids = {}
    for i = first, math.min(first + 999, #entries) do ids[#ids + 1] = entries[i][1] end
    ids[#ids + 1] = 'JUSTID'
    redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, unpack(ids))
  end
end
return { 1, entries }
