-- cancel: the owner gives a live hold back; units return to the stock and to the user's limit.
-- Appends StockReleased(reason = cancelled). Cancelling a cancelled hold answers its view, no event.
-- A hold whose stock no longer exists answers stock_missing and changes nothing (no counter hash is
-- re-created by HINCRBY). Not refused when the outbox is full: it finishes an admitted hold.
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
-- ARGV[1] allocation id   ARGV[2] user id (must own the hold)   ARGV[3] event id (UUIDv7)
-- ARGV[4] seconds to keep the finished hold readable
-- ARGV[5] W3C traceparent of the request, or '' (stored with the event in the outbox)
-- Returns { 'ok', <view JSON>, <stock version> } | { 'unchanged', <view JSON>, <stock version> } | { 'not_found' } | { 'forbidden' }
--       | { 'hold_not_active', <status> } | { 'stock_missing' } | { 'invalid', <argument> } | { 'corrupt', 'hold' }
-- The version is the stock's after this release (unchanged: its current one, later than the release's),
-- for the api's Consistency-Token.
local allocation_id, user_id = ARGV[1], ARGV[2]
local retain_seconds = tonumber(ARGV[4])
if not retain_seconds or retain_seconds < 1 then return { 'invalid', 'retainSeconds' } end

local hold, refusal = hold_to_change(allocation_id, user_id, 'cancelled')
if not hold then return refusal end
if hold.status ~= 'held' then return { 'hold_not_active', hold.status } end
if not tonumber(hold.quantity) or not tonumber(hold.expiresAt) then return { 'corrupt', 'hold' } end
if redis.call('EXISTS', KEYS[2]) == 0 then return { 'stock_missing' } end

local keys = { hold = KEYS[1], stock = KEYS[2], buyers = KEYS[3], due = KEYS[4], outbox = KEYS[5], released = KEYS[6] }
local rk = { stock = KEYS[2], room = KEYS[7], line = KEYS[8], admitted = KEYS[9], tickets = KEYS[10] }
local now = now_ms()
local version = release_hold(keys, allocation_id, hold, 'cancelled', now, ARGV[3], retain_seconds, ARGV[5])
room_fill(rk, now)
return { 'ok', allocation_view(allocation_id, hold), version }
