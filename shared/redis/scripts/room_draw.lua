-- room_draw: puts the pre-queue in drawn order at the start, reveals the seed, and admits the first.
-- Lua has no SHA-256, so the caller computes the order (sha256(hex(seed) + ":" + ticketId) ascending,
-- shared/domain/room.ts) from the pre-queue it read; this script checks that the list is exactly the
-- pre-queue (same size, every id a member, no repeats) before its first write. After startsAt no
-- join can enter the pre-queue (room_join.lua compares with the same Redis clock), so a list read
-- after the start stays right; a mismatch answers changed and writes nothing.
-- KEYS[1] stock hash      <p>:{s}:stock:<id>
-- KEYS[2] room hash       <p>:{s}:room:<id>
-- KEYS[3] pre-queue zset  <p>:{s}:room:<id>:pre
-- KEYS[4] line zset       <p>:{s}:room:<id>:line
-- KEYS[5] admitted zset   <p>:{s}:room:<id>:admitted
-- KEYS[6] tickets hash    <p>:{s}:room:<id>:tickets
-- KEYS[7] draw list       <p>:{s}:room:<id>:draw        (the public drawn order)
-- ARGV[1..n] the pre-queue's ticket ids in drawn order
-- Returns { 'drawn', <admitted now> } | { 'already' } | { 'not_started', <ms to the start> } | { 'changed' }
--       | { 'no_room' }
local r = redis.call('HMGET', KEYS[2], 'drawn', 'ttl')
if not r[2] then return { 'no_room' } end
if r[1] == '1' then return { 'already' } end
local s = redis.call('HMGET', KEYS[1], 'startsAt', 'keepUntil')
local starts_at = tonumber(s[1])
if not starts_at then return { 'no_room' } end
local now = now_ms()
if now < starts_at then return { 'not_started', starts_at - now } end
local n = #ARGV
if redis.call('ZCARD', KEYS[3]) ~= n then return { 'changed' } end
local seen = {}
for i = 1, n do
  if seen[ARGV[i]] or not redis.call('ZSCORE', KEYS[3], ARGV[i]) then return { 'changed' } end
  seen[ARGV[i]] = true
end

local chunk = {}
for i = 1, n do
  redis.call('ZADD', KEYS[4], i, ARGV[i])
  chunk[#chunk + 1] = ARGV[i]
  if #chunk == 1000 or i == n then
    redis.call('RPUSH', KEYS[7], unpack(chunk))
    chunk = {}
  end
end
redis.call('DEL', KEYS[3])
local keep_until = s[2] and tonumber(s[2]) or nil
if keep_until then
  redis.call('PEXPIREAT', KEYS[4], keep_until)
  redis.call('PEXPIREAT', KEYS[7], keep_until)
end
local rk = { stock = KEYS[1], room = KEYS[2], pre = KEYS[3], line = KEYS[4], admitted = KEYS[5], tickets = KEYS[6] }
room_reveal(rk, now)
return { 'drawn', room_fill(rk, now) }
