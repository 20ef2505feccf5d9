-- expire: releases one hold whose time is up and appends StockReleased(reason = expired).
-- Safe to call from several expirers at once, and early or late: it re-checks status and expiry.
-- Never refused for a full outbox: releasing finishes a hold admitted under the limit.
-- A hold whose stock no longer exists is not released (that would re-create a counter hash): its due
-- entry is dropped and the hold gets the retention TTL, so neither lingers; the answer is stock_missing.
-- KEYS[1] hold hash              <p>:{s}:hold:<allocationId>
-- KEYS[2] stock hash             <p>:{s}:stock:<id>   (the hold's stock)
-- KEYS[3] stock buyers hash      <p>:{s}:stock:<id>:buyers
-- KEYS[4] shard due-holds zset   <p>:{s}:holds:due
-- KEYS[5] shard outbox stream    <p>:{s}:outbox
-- KEYS[6] shard released channel <p>:{s}:released   (sharded pub/sub: '<stock id> <version>' after the release)
-- KEYS[7] room hash              <p>:{s}:room:<id>    (KEYS 7-10: the stock's waiting room, if it has one:
-- KEYS[8] room line zset         <p>:{s}:room:<id>:line           the unit that came back admits the
-- KEYS[9] room admitted zset     <p>:{s}:room:<id>:admitted       next ticket in the same step)
-- KEYS[10] room tickets hash     <p>:{s}:room:<id>:tickets
-- ARGV[1] allocation id   ARGV[2] event id (UUIDv7)   ARGV[3] seconds to keep the finished hold readable
-- ARGV[4] W3C traceparent (the expirer's), or '' (stored with the event in the outbox)
-- Returns { 'expired' } | { 'not_due' } | { 'not_active' } (hold gone or finished; its due entry is dropped)
--       | { 'stock_missing' } | { 'invalid', <argument> } | { 'corrupt', 'hold' }
local allocation_id = ARGV[1]
local retain_seconds = tonumber(ARGV[3])
if not retain_seconds or retain_seconds < 1 then return { 'invalid', 'retainSeconds' } end

local hold = read_hold(KEYS[1])
if not hold or hold.status ~= 'held' then
  redis.call('ZREM', KEYS[4], allocation_id)
  return { 'not_active' }
end
local expires_at = tonumber(hold.expiresAt)
if not expires_at or not tonumber(hold.quantity) then return { 'corrupt', 'hold' } end
local now = now_ms()
if now < expires_at then return { 'not_due' } end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[4], allocation_id)
  redis.call('EXPIRE', KEYS[1], retain_seconds)
  return { 'stock_missing' }
end

local keys = { hold = KEYS[1], stock = KEYS[2], buyers = KEYS[3], due = KEYS[4], outbox = KEYS[5], released = KEYS[6] }
local rk = { stock = KEYS[2], room = KEYS[7], line = KEYS[8], admitted = KEYS[9], tickets = KEYS[10] }
release_hold(keys, allocation_id, hold, 'expired', now, ARGV[2], retain_seconds, ARGV[4])
room_fill(rk, now)
return { 'expired' }
