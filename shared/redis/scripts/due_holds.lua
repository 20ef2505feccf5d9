-- due_holds: ids of a shard's holds whose expiry has passed by Redis' clock, earliest first.
-- The expirer's own clock is never used for this: 10 s ahead, it would fetch holds that expire.lua
-- (which reads TIME) answers not_due, and spin through full batches of them all tick long.
-- KEYS[1] shard due-holds zset   <p>:{s}:holds:due
-- ARGV[1] most ids to return (integer >= 1)
-- Returns { <allocation id>, ... } (read only)
local limit = tonumber(ARGV[1])
if not limit or limit < 1 then return redis.error_reply('ERR due_holds: limit must be a positive integer') end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, limit)
