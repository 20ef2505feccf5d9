-- create_stock: creates a sale item and appends StockCreated.
-- KEYS[1] stock hash          <p>:{s}:stock:<id>
-- KEYS[2] shard outbox stream <p>:{s}:outbox
-- KEYS[3] shard's taken ids   <p>:{s}:stock-ids   (hash id -> creation ms; never expires)
-- KEYS[4] room hash           <p>:{s}:room:<id>   (KEYS 4-5 untouched without a waiting room)
-- KEYS[5] shard rooms set     <p>:{s}:rooms       (stock ids whose rooms the expirer sweeps)
-- ARGV[1] stock id       ARGV[2] event id (UUIDv7)
-- ARGV[3] name           ARGV[4] description
-- ARGV[5] price (minor units, integer >= 0)   ARGV[6] currency (ISO 4217)
-- ARGV[7] quantity (integer >= 1)             ARGV[8] per-user limit (integer >= 1)
-- ARGV[9] hold seconds (integer >= 1)
-- ARGV[10] startsAt epoch ms, or '' for now   ARGV[11] endsAt epoch ms, or '' for no end
-- ARGV[12] outbox max length: at or above it nothing is written and the answer is outbox_full
-- ARGV[13] seconds a finished hold is kept (HOLD_RETENTION_SECONDS)
-- ARGV[14] W3C traceparent of the request, or '' (stored with the event in the outbox)
-- ARGV[15] waiting room admission TTL seconds (5-3600), or '' for no waiting room
-- ARGV[16] the room's secret seed (64 hex)   ARGV[17] its commitment, hex(sha256(seed bytes))
-- A sale with an end is deleted by Redis once nothing can refer to it any more (keepUntil = endsAt +
-- holdSeconds + retention: every hold of it has expired and outlived its own retention); a sale
-- without an end is kept until an operator deletes it (docs/design.md §3).
-- A stock id is never used twice: the taken-ids hash keeps it after the stock hash is gone. A second
-- life would start again at version 1, which the read models' version guards (and the api's cache of
-- ended sales) take for the old stock's past, and an old hold could release units into it.
-- Returns { 'ok', <flat HGETALL of the new stock> } | { 'stock_exists' } | { 'stock_id_taken' }
--       | { 'invalid', <field> } | { 'outbox_full', <length> }
local stock_id, event_id = ARGV[1], ARGV[2]
local price, quantity = tonumber(ARGV[5]), tonumber(ARGV[7])
local per_user_limit, hold_seconds = tonumber(ARGV[8]), tonumber(ARGV[9])
local outbox_max, retain_seconds = tonumber(ARGV[12]), tonumber(ARGV[13])

if redis.call('EXISTS', KEYS[1]) == 1 then return { 'stock_exists' } end
if redis.call('HEXISTS', KEYS[3], stock_id) == 1 then return { 'stock_id_taken' } end
if not price or price < 0 then return { 'invalid', 'price' } end
if not quantity or quantity < 1 then return { 'invalid', 'quantity' } end
if not per_user_limit or per_user_limit < 1 then return { 'invalid', 'perUserLimit' } end
if not hold_seconds or hold_seconds < 1 then return { 'invalid', 'holdSeconds' } end

local now = now_ms()
local starts_at = ARGV[10] == '' and now or tonumber(ARGV[10])
local ends_at = ARGV[11] ~= '' and tonumber(ARGV[11]) or nil
if not starts_at then return { 'invalid', 'startsAt' } end
if ARGV[11] ~= '' and (not ends_at or ends_at <= starts_at) then return { 'invalid', 'endsAt' } end
if not outbox_max or outbox_max < 1 then return { 'invalid', 'outboxMaxLength' } end
if not retain_seconds or retain_seconds < 1 then return { 'invalid', 'retainSeconds' } end
local room_ttl = ARGV[15] ~= '' and tonumber(ARGV[15]) or nil
if ARGV[15] ~= '' and (not room_ttl or room_ttl < 5 or room_ttl > 3600 or room_ttl % 1 ~= 0) then return { 'invalid', 'admissionTtlSeconds' } end
if room_ttl and (not string.match(ARGV[16], '^%x+$') or #ARGV[16] ~= 64 or #ARGV[17] ~= 64) then return { 'invalid', 'seed' } end
local outbox_length = redis.call('XLEN', KEYS[2])
if outbox_length >= outbox_max then return { 'outbox_full', outbox_length } end

redis.call('HSET', KEYS[1],
  'name', ARGV[3], 'description', ARGV[4], 'price', price, 'currency', ARGV[6],
  'total', quantity, 'available', quantity, 'held', 0, 'sold', 0,
  'perUserLimit', per_user_limit, 'holdSeconds', hold_seconds,
  'startsAt', starts_at, 'endsAt', ends_at or '', 'version', 1, 'createdAt', now)
redis.call('HSET', KEYS[3], stock_id, now)
if ends_at then
  local keep_until = math.max(ends_at + (hold_seconds + retain_seconds) * 1000, now + retain_seconds * 1000)
  redis.call('HSET', KEYS[1], 'keepUntil', keep_until)
  redis.call('PEXPIREAT', KEYS[1], keep_until)
end

if room_ttl then
  redis.call('HSET', KEYS[1], 'roomTtl', room_ttl)
  redis.call('HSET', KEYS[4], 'ttl', room_ttl, 'seed', ARGV[16], 'commitment', ARGV[17], 'drawn', '0', 'seq', 0, 'reserved', 0)
  if ends_at then redis.call('PEXPIREAT', KEYS[4], tonumber(redis.call('HGET', KEYS[1], 'keepUntil'))) end
  redis.call('SADD', KEYS[5], stock_id)
end

emit(KEYS[2], event_id, 'StockCreated', stock_id, 1, now, {
  name = ARGV[3],
  description = ARGV[4],
  price = price,
  currency = ARGV[6],
  total = quantity,
  perUserLimit = per_user_limit,
  holdSeconds = hold_seconds,
  startsAt = iso8601(starts_at),
  endsAt = ends_at and iso8601(ends_at) or cjson.null,
  available = quantity,
  held = 0,
  sold = 0,
}, ARGV[14])
return { 'ok', redis.call('HGETALL', KEYS[1]) }
