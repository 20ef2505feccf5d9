-- relay_lease_release: gives a lease up (compare-and-delete: never someone else's).
-- KEYS[1] shard lease          <p>:{s}:outbox:relay-lease
-- KEYS[2] shard lease holder   <p>:{s}:outbox:relay-holder
-- ARGV[1] consumer name
-- ARGV[2] "1" when the release is clean: the caller has no Kafka transaction open with the shard's
--         entries and sends none without acquiring the lease again. Then the holder record is
--         deleted too, and the next owner need not fence the caller (a live relay handing a shard
--         over keeps its producer). "0" (e.g. stopping with a send still in flight) keeps the record:
--         the next owner fences the caller first.
-- Returns 1 when released, 0 when the caller did not hold it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '1' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return redis.call('DEL', KEYS[1])
