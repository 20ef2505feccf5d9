-- allocate: holds `quantity` units of a stock for one user and appends StockAllocated.
-- Checks, in order: idempotency record, stock exists, sale window, admission (waiting-room stocks
-- only), stock left, per-user limit.
-- KEYS[1] stock hash                <p>:{s}:stock:<id>
-- KEYS[2] stock buyers hash         <p>:{s}:stock:<id>:buyers   (userId -> units held or bought)
-- KEYS[3] hold hash (new)           <p>:{s}:hold:<allocationId>
-- KEYS[4] shard due-holds zset      <p>:{s}:holds:due           (allocationId scored by expiry ms)
-- KEYS[5] request record            <p>:{s}:idem:<stock>:<len>.<user>:<len>.<key>  (Idempotency-Key sent), or
--                                   <p>:{s}:req:<stock>:<request id>  (none sent: a UUID per HTTP request)
--         Either way a resend or retry of one request (a reply lost with its connection) finds the
--         record and gets the same hold back, never a second one. Unused when ARGV[6] is ''.
-- KEYS[6] shard outbox stream       <p>:{s}:outbox
-- KEYS[7] room hash                 <p>:{s}:room:<id>            (KEYS 7-10 untouched when the stock has no room)
-- KEYS[8] room line zset            <p>:{s}:room:<id>:line
-- KEYS[9] room admitted zset        <p>:{s}:room:<id>:admitted
-- KEYS[10] room tickets hash        <p>:{s}:room:<id>:tickets
-- ARGV[1] stock id   ARGV[2] user id   ARGV[3] quantity (integer >= 1)
-- ARGV[4] allocation id (new)          ARGV[5] event id (UUIDv7)
-- ARGV[6] request fingerprint (user, stock, quantity), or '' for no record (benchmarks of the bare script)
-- ARGV[7] record ttl seconds (IDEMPOTENCY_TTL_SECONDS, or REQUEST_RECORD_TTL_SECONDS for a request id)
-- ARGV[8] outbox max length: at or above it nothing is written and the answer is outbox_full
-- ARGV[9] W3C traceparent of the request, or '' (stored with the event in the outbox)
-- ARGV[10] Admission-Token header, or '' (required when the stock has a waiting room: docs/waiting-room.md)
-- Returns { 'ok', <allocation view JSON>, <stock version> } | { 'replay', <allocation view JSON>, <stock version> }
--       | { 'idempotency_key_reused' } | { 'not_found' } | { 'not_started', <ms until the sale starts> } | { 'ended' }
--       | { 'invalid', <argument> } | { 'corrupt', 'stock' } | { 'outbox_full', <length> }
--       | { 'sold_out', <available>, <stock version> } | { 'limit_exceeded', <units the user may still take> }
--       | { 'not_admitted', missing | unknown | waiting | expired | done }
-- The extras after sold_out and not_started let each api instance answer later refusals from memory
-- (docs/design.md §12): the version orders a "sold out" against a "units released" message, and the
-- time to start is Redis time, so api clocks that disagree with Redis do not matter.
-- The version after ok and replay is the stock version this hold produced (the api's Consistency-Token);
-- a record written before it was kept answers the stock's current version (later, so still safe to wait for).
-- A replay and every refusal write nothing, so they are answered even when the outbox is full.
local stock_id, user_id, quantity = ARGV[1], ARGV[2], tonumber(ARGV[3])
local allocation_id, event_id, fingerprint = ARGV[4], ARGV[5], ARGV[6]
local idempotency_ttl, outbox_max = tonumber(ARGV[7]), tonumber(ARGV[8])

if not quantity or quantity < 1 or quantity % 1 ~= 0 then return { 'invalid', 'quantity' } end
if not idempotency_ttl or idempotency_ttl < 1 then return { 'invalid', 'idempotencyTtl' } end
if not outbox_max or outbox_max < 1 then return { 'invalid', 'outboxMaxLength' } end

if fingerprint ~= '' then
  local stored = redis.call('GET', KEYS[5])
  if stored then
    local record = cjson.decode(stored)
    if record.fingerprint ~= fingerprint then return { 'idempotency_key_reused' } end
    return { 'replay', record.response, record.version or tonumber(redis.call('HGET', KEYS[1], 'version')) }
  end
end

local s = redis.call('HMGET', KEYS[1], 'available', 'perUserLimit', 'holdSeconds', 'startsAt', 'endsAt', 'version', 'keepUntil', 'roomTtl')
if not s[1] then return { 'not_found' } end
-- Every stock field the writes below use is read and checked here: Lua has no rollback.
local available, per_user_limit, hold_seconds = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
local starts_at, ends_at = tonumber(s[4]), nil
if s[5] and s[5] ~= '' then ends_at = tonumber(s[5]) end
-- When the sale will be deleted (create_stock.lua); its buyers hash goes with it.
local keep_until = s[7] and tonumber(s[7]) or nil
local stock_version = tonumber(s[6])
if not available or not per_user_limit or not hold_seconds or hold_seconds < 1 or not starts_at or not stock_version
  or (s[5] and s[5] ~= '' and not ends_at) or (s[7] and not keep_until) then
  return { 'corrupt', 'stock' }
end

local now = now_ms()
if now < starts_at then return { 'not_started', starts_at - now } end
if ends_at and now >= ends_at then return { 'ended' } end
-- A waiting-room stock sells only to an admitted ticket (token '<ticket id>.<secret>'), once, for at
-- most the units it was admitted for. Another user's, another stock's (not in this room's tickets),
-- a used or an expired token all fail here, before any write.
local rk, ticket_id, ticket = nil, nil, nil
if s[8] then
  rk = { stock = KEYS[1], room = KEYS[7], line = KEYS[8], admitted = KEYS[9], tickets = KEYS[10] }
  local secret
  ticket_id, secret = string.match(ARGV[10] or '', '^(%x+)%.(%x+)$')
  if not ticket_id then return { 'not_admitted', 'missing' } end
  ticket = room_get_ticket(rk, ticket_id)
  if not ticket or ticket.u ~= user_id or ticket.k ~= secret then return { 'not_admitted', 'unknown' } end
  if ticket.s ~= 'admitted' then return { 'not_admitted', ticket.s } end
  if now >= tonumber(ticket.x) then return { 'not_admitted', 'expired' } end
  if quantity > tonumber(ticket.q) then return { 'limit_exceeded', tonumber(ticket.q) } end
end
if available < quantity then return { 'sold_out', available, stock_version } end
local user_units = tonumber(redis.call('HGET', KEYS[2], user_id) or '0')
if not user_units then return { 'corrupt', 'buyers' } end
if user_units + quantity > per_user_limit then return { 'limit_exceeded', per_user_limit - user_units } end
-- Back-pressure: a stopped relay must not let the outbox eat Redis' memory (OUTBOX_MAX_LENGTH).
local outbox_length = redis.call('XLEN', KEYS[6])
if outbox_length >= outbox_max then return { 'outbox_full', outbox_length } end

-- All checks passed: from here on, only writes.
local counters, version = apply_to_stock(KEYS[1], -quantity, quantity, 0)
redis.call('HINCRBY', KEYS[2], user_id, quantity)
if keep_until then redis.call('PEXPIREAT', KEYS[2], keep_until) end
local expires_at = now + hold_seconds * 1000
local hold = { stockId = stock_id, userId = user_id, quantity = quantity, status = 'held', expiresAt = expires_at }
redis.call('HSET', KEYS[3], 'stockId', stock_id, 'userId', user_id, 'quantity', quantity,
  'status', 'held', 'expiresAt', expires_at, 'createdAt', now)
redis.call('ZADD', KEYS[4], expires_at, allocation_id)

emit(KEYS[6], event_id, 'StockAllocated', stock_id, version, now, {
  allocationId = allocation_id,
  userId = user_id,
  quantity = quantity,
  expiresAt = iso8601(expires_at),
  available = counters.available,
  held = counters.held,
  sold = counters.sold,
}, ARGV[9])

if ticket then
  -- The admission is used: its units not taken go to the next ticket in line.
  room_resolve(rk, ticket_id, ticket, 'done')
  room_fill(rk, now)
end

local response = allocation_view(allocation_id, hold)
if fingerprint ~= '' then
  redis.call('SET', KEYS[5], cjson.encode({ fingerprint = fingerprint, response = response, version = version }), 'EX', idempotency_ttl)
end
return { 'ok', response, version }
