-- snapshot: repairs a stock's read side from Redis truth (`bun run repair <stockId>`). Appends a
-- StockSnapshot event with the whole stock as Redis has it (static fields, counters and the ids of
-- its live holds) at a version above every version anything downstream has seen, so every
-- version-guarded read model (PostgreSQL, Elasticsearch, any future one) takes it like any newer
-- event and its next events follow it.
-- Why a jump and not "applied unconditionally": Elasticsearch's external versioning cannot move a
-- document's version back, and a read model that drifted holds versions Redis never had (e.g. events
-- of writes a failover forgot). Versions between the old one and the snapshot's are skipped for good;
-- the verifier treats the latest snapshot as the stock's new baseline.
-- Why `liveHolds`: an order a forgotten StockAllocated created downstream stays 'held' for ever (Redis
-- never had that hold, so no expiry or purchase will end it). With the live holds as Redis has them,
-- a read model ends every hold of the stock placed before the snapshot that is not in the list
-- (projector-postgres marks it 'voided'). The list comes from the shard's due-holds zset, which holds
-- exactly the live holds (allocate adds, purchase/cancel/expire remove); the hold hash says whose.
-- Bounds (ARGV[5], ARGV[6]; the caller passes shared/verify/repair.ts's defaults), checked before the
-- first write (nothing is written when refused; the operator retries once holds have drained):
-- - live holds of the stock, default 10,000 (MAX_SNAPSHOT_LIVE_HOLDS, also the event schema's limit):
--   an allocation id is at most 42 characters, 45 bytes in the JSON array, so 10,000 make ~450 KB, half
--   of the relay's per-send cap MAX_SEND_BYTES (900 KB, shared/kafka/producer.ts), itself under Kafka's
--   default message.max.bytes (~1 MiB per record batch; the relay dead-letters an event over its cap).
-- - entries in the shard's due set, default 50,000: the scan is atomic (a hold placed between two
--   partial scans would be missed, then wrongly voided), so it blocks the shard's master while it runs;
--   50,000 entries took 124-190 ms on this 2-core machine under load.
-- The hold hashes are read by name (<hold key prefix><allocation id>): same hash tag as KEYS[3], so
-- the same slot, which Redis Cluster allows a script to read without declaring each key.
-- KEYS[1] stock hash          <p>:{s}:stock:<id>
-- KEYS[2] shard outbox stream <p>:{s}:outbox
-- KEYS[3] shard due-holds zset <p>:{s}:holds:due   (allocationId scored by expiry ms; live holds only)
-- ARGV[1] stock id   ARGV[2] event id (UUIDv7)
-- ARGV[3] the highest version seen downstream (Kafka, read models); 0 if none is higher than Redis
-- ARGV[4] hold key prefix     <p>:{s}:hold:        (a hold's key is this followed by its allocation id)
-- ARGV[5] most live holds of the stock to list   ARGV[6] most entries of the due set to scan
-- Returns { 'ok', <new version>, <previous version>, <live holds> } | { 'not_found' } | { 'invalid', <field> }
--       | { 'too_many_holds', <count>, 'stock' | 'shard' }
local stock_id, event_id, hold_prefix = ARGV[1], ARGV[2], ARGV[4]
local seen = tonumber(ARGV[3])
local max_live, max_due = tonumber(ARGV[5]), tonumber(ARGV[6])
if not seen or seen < 0 then return { 'invalid', 'seenVersion' } end
if not hold_prefix or hold_prefix == '' then return { 'invalid', 'holdKeyPrefix' } end
if not max_live or max_live < 0 then return { 'invalid', 'maxLiveHolds' } end
if not max_due or max_due < 0 then return { 'invalid', 'maxDueScan' } end
if redis.call('EXISTS', KEYS[1]) == 0 then return { 'not_found' } end
local s = redis.call('HMGET', KEYS[1], 'name', 'description', 'price', 'currency', 'total', 'available', 'held', 'sold',
  'perUserLimit', 'holdSeconds', 'startsAt', 'endsAt', 'version')
local previous = tonumber(s[13])
if not previous then return { 'invalid', 'version' } end

local due = redis.call('ZCARD', KEYS[3])
if due > max_due then return { 'too_many_holds', due, 'shard' } end
local live = {}
local CHUNK = 1000
for start = 0, due - 1, CHUNK do
  local ids = redis.call('ZRANGE', KEYS[3], start, start + CHUNK - 1)
  for _, id in ipairs(ids) do
    local h = redis.call('HMGET', hold_prefix .. id, 'stockId', 'status')
    if h[1] == stock_id and h[2] == 'held' then
      live[#live + 1] = id
      if #live > max_live then return { 'too_many_holds', #live, 'stock' } end
    end
  end
end
-- Sorted: the same Redis state gives the same event payload.
table.sort(live)
-- cjson writes an empty table as {}: an empty list goes in as a placeholder that emit replaces by [].
local live_holds, raw = live, nil
if #live == 0 then
  live_holds = '[]'
  raw = { ['"liveHolds":"[]"'] = '"liveHolds":[]' }
end

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
  liveHolds = live_holds,
}, nil, raw)
return { 'ok', version, previous, #live }
