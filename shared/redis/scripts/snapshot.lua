--[[
  snapshot: repairs a stock's read side from Redis truth (`bun run repair <stockId>`). Appends a
  StockSnapshot event with the whole stock as Redis has it (static fields and counters) at a version
  above every version anything downstream has seen, so every version-guarded read model (PostgreSQL,
  Elasticsearch, any future one) takes it like any newer event and its next events follow it.
  Why a jump and not "applied unconditionally": Elasticsearch's external versioning cannot move a
  document's version back, and a read model that drifted holds versions Redis never had (e.g. events
  of writes a failover forgot). Versions between the old one and the snapshot's are skipped for good;
  the verifier treats the latest snapshot as the stock's new baseline.
  KEYS[1] stock hash          <p>:{s}:stock:<id>
  KEYS[2] shard outbox stream <p>:{s}:outbox
  ARGV[1] stock id   ARGV[2] event id (UUIDv7)
  ARGV[3] the highest version seen downstream (Kafka, read models); 0 if none is higher than Redis
  Returns { 'ok', <new version>, <previous version> } | { 'not_found' } | { 'invalid', <field> }
]]
local stock_id, event_id = ARGV[1], ARGV[2]
local seen = tonumber(ARGV[3])
if not seen or seen < 0 then return { 'invalid', 'seenVersion' } end
if redis.call('EXISTS', KEYS[1]) == 0 then return { 'not_found' } end
local s = redis.call('HMGET', KEYS[1], 'name', 'description', 'price', 'currency', 'total', 'available', 'held', 'sold',
  'perUserLimit', 'holdSeconds', 'startsAt', 'endsAt', 'version')
local previous = tonumber(s[13])
if not previous then return { 'invalid', 'version' } end
local version = math.max(previous, seen) + 1
redis.call('HSET', KEYS[1], 'version', version)
emit(KEYS[2], event_id, 'StockSnapshot', stock_id, version, now_ms(), {
  name = s[1],
  description = s[2],
  price = tonumber(s[3]),
  currency = s[4],
  total = tonumber(s[5]),
  perUserLimit = tonumber(s[9]),
  holdSeconds = tonumber(s[10]),
  startsAt = iso8601(tonumber(s[11])),
  endsAt = (s[12] and s[12] ~= '') and iso8601(tonumber(s[12])) or cjson.null,
  available = tonumber(s[6]),
  held = tonumber(s[7]),
  sold = tonumber(s[8]),
  previousVersion = previous,
})
return { 'ok', version, previous }
