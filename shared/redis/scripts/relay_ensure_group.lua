-- relay_ensure_group: creates the relay's consumer group on a shard's outbox (and the stream) if
-- missing. A script rather than a bare XGROUP CREATE: XGROUP is a container command whose key
-- ioredis' Cluster client does not know, so auto-pipelined it can land on the wrong master (MOVED
-- inside a mixed pipeline is not retried); a script names its key, so it always goes to the owner.
-- From 0: whatever a fresh stream already holds has not been relayed.
-- KEYS[1] shard outbox   <p>:{s}:outbox
-- ARGV[1] group
-- Returns 1 when created, 0 when it existed.
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if ok then return 1 end
if string.find(tostring(err), 'BUSYGROUP') then return 0 end
return redis.error_reply(tostring(err))
