--[[
  purchase: turns a live hold into a purchase and appends PurchaseCompleted.
  Buying a hold that is already purchased answers its view again, with no new event.
  KEYS[1] hold hash              <p>:{s}:hold:<allocationId>
  KEYS[2] stock hash             <p>:{s}:stock:<id>   (the hold's stock)
  KEYS[3] shard due-holds zset   <p>:{s}:holds:due
  KEYS[4] shard outbox stream    <p>:{s}:outbox
  ARGV[1] allocation id   ARGV[2] user id (must own the hold)   ARGV[3] event id (UUIDv7)
  ARGV[4] seconds to keep the finished hold readable
  ARGV[5] W3C traceparent of the request, or '' (stored with the event in the outbox)
  Returns { 'ok', <view JSON> } | { 'unchanged', <view JSON> } | { 'not_found' } | { 'forbidden' }
        | { 'hold_not_active', <status> } | { 'hold_expired' }
]]
local allocation_id, user_id, event_id = ARGV[1], ARGV[2], ARGV[3]

local hold = read_hold(KEYS[1])
if not hold then return { 'not_found' } end
if hold.userId ~= user_id then return { 'forbidden' } end
if hold.status == 'purchased' then return { 'unchanged', allocation_view(allocation_id, hold) } end
if hold.status ~= 'held' then return { 'hold_not_active', hold.status } end
local now = now_ms()
if now >= tonumber(hold.expiresAt) then return { 'hold_expired' } end
local s = redis.call('HMGET', KEYS[2], 'price', 'currency')
if not s[1] then return { 'not_found' } end

local quantity = tonumber(hold.quantity)
local amount = tonumber(s[1]) * quantity
local counters, version = apply_to_stock(KEYS[2], 0, -quantity, quantity)
redis.call('HSET', KEYS[1], 'status', 'purchased', 'purchasedAt', now, 'amount', amount, 'currency', s[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZREM', KEYS[3], allocation_id)
hold.status, hold.amount, hold.currency = 'purchased', amount, s[2]

emit(KEYS[4], event_id, 'PurchaseCompleted', hold.stockId, version, now, {
  allocationId = allocation_id,
  userId = user_id,
  quantity = quantity,
  amount = amount,
  currency = s[2],
  available = counters.available,
  held = counters.held,
  sold = counters.sold,
}, ARGV[5])
return { 'ok', allocation_view(allocation_id, hold) }
