-- purchase: turns a live hold into a purchase and appends PurchaseCompleted.
-- Buying a hold that is already purchased answers its view again, with no new event. A hold past its
-- expiry answers hold_expired whether or not the expirer has released it yet (one code for one situation).
-- Not refused when the outbox is full: it finishes a hold admitted under the limit (one event per hold).
-- KEYS[1] hold hash              <p>:{s}:hold:<allocationId>
-- KEYS[2] stock hash             <p>:{s}:stock:<id>   (the hold's stock)
-- KEYS[3] shard due-holds zset   <p>:{s}:holds:due
-- KEYS[4] shard outbox stream    <p>:{s}:outbox
-- ARGV[1] allocation id   ARGV[2] user id (must own the hold)   ARGV[3] event id (UUIDv7)
-- ARGV[4] seconds to keep the finished hold readable
-- ARGV[5] W3C traceparent of the request, or '' (stored with the event in the outbox)
-- Returns { 'ok', <view JSON>, <stock version> } | { 'unchanged', <view JSON>, <stock version> } | { 'not_found' } | { 'forbidden' }
--       | { 'hold_not_active', <status> } | { 'hold_expired' } | { 'stock_missing' } | { 'invalid', <argument> }
--       | { 'corrupt', 'hold' | 'stock' | 'amount' }
-- The version is the stock's after this purchase (unchanged: its current one, later than the purchase's),
-- for the api's Consistency-Token.
local allocation_id, user_id, event_id = ARGV[1], ARGV[2], ARGV[3]
local retain_seconds = tonumber(ARGV[4])
if not retain_seconds or retain_seconds < 1 then return { 'invalid', 'retainSeconds' } end

local hold, refusal = hold_to_change(allocation_id, user_id, 'purchased')
if not hold then return refusal end
if hold.status == 'expired' then return { 'hold_expired' } end
if hold.status ~= 'held' then return { 'hold_not_active', hold.status } end
local quantity, expires_at = tonumber(hold.quantity), tonumber(hold.expiresAt)
if not quantity or not expires_at then return { 'corrupt', 'hold' } end
local now = now_ms()
if now >= expires_at then return { 'hold_expired' } end
-- Price and currency are read and checked before the first write (Lua has no rollback).
local s = redis.call('HMGET', KEYS[2], 'price', 'currency')
if not s[1] then return { 'stock_missing' } end
local price, currency = tonumber(s[1]), s[2]
if not price or not currency or currency == '' then return { 'corrupt', 'stock' } end
local amount = price * quantity
-- cjson writes numbers with 14 significant digits: a larger amount would reach the event rounded
-- (shared/domain/policy.ts bounds price x quantity below 10^14, so this only catches a corrupt stock).
if amount >= 1e14 then return { 'corrupt', 'amount' } end

local counters, version = apply_to_stock(KEYS[2], 0, -quantity, quantity)
redis.call('HSET', KEYS[1], 'status', 'purchased', 'purchasedAt', now, 'amount', amount, 'currency', currency)
redis.call('EXPIRE', KEYS[1], retain_seconds)
redis.call('ZREM', KEYS[3], allocation_id)
hold.status, hold.amount, hold.currency = 'purchased', amount, currency

emit(KEYS[4], event_id, 'PurchaseCompleted', hold.stockId, version, now, {
  allocationId = allocation_id,
  userId = user_id,
  quantity = quantity,
  amount = amount,
  currency = currency,
  available = counters.available,
  held = counters.held,
  sold = counters.sold,
}, ARGV[5])
return { 'ok', allocation_view(allocation_id, hold), version }
