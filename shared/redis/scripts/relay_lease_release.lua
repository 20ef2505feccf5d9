-- relay_lease_release: gives a lease up (compare-and-delete: never someone else's).
-- KEYS[1] shard lease   <p>:{s}:outbox:relay-lease
-- ARGV[1] consumer name
-- Returns 1 when released, 0 when the caller did not hold it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
