-- Helpers prepended to every flash-sale script when it is loaded (see shared/redis/scripts.ts).
-- Redis Lua has no `os` library, so time comes from TIME and is formatted here.
-- Every script keeps the same discipline: read and validate everything first, write only after
-- the last check (Lua has no rollback), and append exactly one event per state change.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Days since 1970-01-01 to a civil date (H. Hinnant's algorithm), for ISO-8601 UTC timestamps.
local function iso8601(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, ms % 1000)
end

-- Appends one domain event (docs/design.md §4) to the shard's outbox stream; the relay takes it from there.
-- `traceparent` (W3C, checked by the caller; '' or nil for none) rides along in its own field, next to the event.
-- `raw` (optional) replaces fields of the encoded payload: { ['"<field>":<placeholder JSON>'] = '<JSON>' }, for
-- what cjson cannot write (Redis 7.0's cjson encodes an empty table as {}, never as []).
local function emit(outbox_key, event_id, event_type, stock_id, version, occurred_ms, payload, traceparent, raw)
  local event = cjson.encode({
    eventId = event_id,
    eventType = event_type,
    schemaVersion = 1,
    aggregateType = 'Stock',
    aggregateId = stock_id,
    version = version,
    occurredAt = iso8601(occurred_ms),
    payload = payload,
  })
  if raw then
    for from, to in pairs(raw) do
      local at = string.find(event, from, 1, true)
      if at then event = string.sub(event, 1, at - 1) .. to .. string.sub(event, at + #from) end
    end
  end
  if traceparent and traceparent ~= '' then
    redis.call('XADD', outbox_key, '*', 'event', event, 'traceparent', traceparent)
  else
    redis.call('XADD', outbox_key, '*', 'event', event)
  end
end

-- Counter changes applied to a stock hash; returns the counters after, plus the new version.
local function apply_to_stock(stock_key, d_available, d_held, d_sold)
  local available = redis.call('HINCRBY', stock_key, 'available', d_available)
  local held = redis.call('HINCRBY', stock_key, 'held', d_held)
  local sold = redis.call('HINCRBY', stock_key, 'sold', d_sold)
  local version = redis.call('HINCRBY', stock_key, 'version', 1)
  return { available = available, held = held, sold = sold }, version
end

local function allocation_view(allocation_id, hold)
  local view = {
    allocationId = allocation_id,
    stockId = hold.stockId,
    userId = hold.userId,
    quantity = tonumber(hold.quantity),
    status = hold.status,
    expiresAt = iso8601(tonumber(hold.expiresAt)),
  }
  if hold.amount and hold.amount ~= '' then
    view.amount = tonumber(hold.amount)
    view.currency = hold.currency
  end
  return cjson.encode(view)
end

local HOLD_FIELDS = { 'stockId', 'userId', 'quantity', 'status', 'expiresAt', 'amount', 'currency' }

-- Reads a hold hash into a table, or nil when it does not exist.
local function read_hold(hold_key)
  local values = redis.call('HMGET', hold_key, unpack(HOLD_FIELDS))
  if not values[1] then return nil end
  local hold = {}
  for i, field in ipairs(HOLD_FIELDS) do hold[field] = values[i] or '' end
  return hold
end
-- purchase.lua and cancel.lua: the hold at KEYS[1] (its stock at KEYS[2]) that `user_id` asks to change,
-- or nil and the reply that ends the script: not_found, forbidden, or, when the hold is already
-- `done_status` (the same request again), its view unchanged with the stock's current version.
local function hold_to_change(allocation_id, user_id, done_status)
  local hold = read_hold(KEYS[1])
  if not hold then return nil, { 'not_found' } end
  if hold.userId ~= user_id then return nil, { 'forbidden' } end
  if hold.status == done_status then
    return nil, { 'unchanged', allocation_view(allocation_id, hold), tonumber(redis.call('HGET', KEYS[2], 'version')) }
  end
  return hold
end

-- Tells every api instance that units of a stock came back (docs/design.md §12): the message is
-- '<stock id> <version>', so an instance drops its "sold out at version v" entry when v < version.
-- Sharded pub/sub (SPUBLISH, Redis >= 7): the channel carries the shard's hash tag and is passed in
-- KEYS, so on a cluster it lives in the script's slot and reaches only that shard's subscribers.
-- pcall, and PUBLISH where SPUBLISH is unknown (Redis 6): a lost message must never fail the write
-- before it; the api's time bound (SOLD_OUT_CACHE_MS) covers it.
local function announce_released(channel_key, stock_id, version)
  local message = stock_id .. ' ' .. version
  local reply = redis.pcall('SPUBLISH', channel_key, message)
  if type(reply) == 'table' and reply.err then redis.pcall('PUBLISH', channel_key, message) end
end

-- Gives a live hold's units back to the stock and the user's limit: shared by cancel and expire.
-- Returns the stock version the release produced.
local function release_hold(keys, allocation_id, hold, reason, now, event_id, retain_seconds, traceparent)
  local quantity = tonumber(hold.quantity)
  local counters, version = apply_to_stock(keys.stock, quantity, -quantity, 0)
  if redis.call('HINCRBY', keys.buyers, hold.userId, -quantity) <= 0 then
    redis.call('HDEL', keys.buyers, hold.userId)
  end
  redis.call('HSET', keys.hold, 'status', reason, 'releasedAt', now)
  redis.call('EXPIRE', keys.hold, retain_seconds)
  redis.call('ZREM', keys.due, allocation_id)
  hold.status = reason
  emit(keys.outbox, event_id, 'StockReleased', hold.stockId, version, now, {
    allocationId = allocation_id,
    userId = hold.userId,
    quantity = quantity,
    reason = reason,
    available = counters.available,
    held = counters.held,
    sold = counters.sold,
  }, traceparent)
  announce_released(keys.released, hold.stockId, version)
  return version
end
