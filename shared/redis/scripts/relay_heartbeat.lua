-- relay_heartbeat: a relay says it is alive and learns who else is; members expire on their own.
-- KEYS[1] relay members zset   <p>:relay:members   (member = consumer name, score = expiry ms, Redis time)
-- ARGV[1] consumer name   ARGV[2] lease ms
-- Returns the live members' names.
local now = now_ms()
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 3)
return redis.call('ZRANGE', KEYS[1], 0, -1)
