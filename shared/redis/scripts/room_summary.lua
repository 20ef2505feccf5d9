-- room_summary: a room's public figures (GET /api/stocks/:id/queue), read in one atomic step. Read only.
-- KEYS[1] stock hash      <p>:{s}:stock:<id>
-- KEYS[2] room hash       <p>:{s}:room:<id>
-- KEYS[3] pre-queue zset  <p>:{s}:room:<id>:pre
-- KEYS[4] line zset       <p>:{s}:room:<id>:line
-- KEYS[5] admitted zset   <p>:{s}:room:<id>:admitted
-- Returns { 'none' } | { <commitment>, <seed, or '' until drawn>, <waiting>, <admitted>, <done>, <expired>,
--           <1 when closed (waiting tickets are sold_out)>, <admissions>, <waited ms sum>, <now ms> }
local r = redis.call('HMGET', KEYS[2], 'commitment', 'seed', 'drawn', 'done', 'expired', 'admissions', 'waitedMs')
if not r[1] then return { 'none' } end
local s = redis.call('HMGET', KEYS[1], 'available', 'held', 'endsAt')
local now = now_ms()
local ends_at = (s[3] and s[3] ~= '') and tonumber(s[3]) or nil
local closed = room_closed(tonumber(s[1]) or 0, tonumber(s[2]) or 0, ends_at, now) and 1 or 0
-- Admissions past their TTL are over even before the expirer's sweep records them.
local admitted = redis.call('ZCOUNT', KEYS[5], '(' .. now, '+inf')
return { r[1], r[3] == '1' and r[2] or '', redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]), admitted,
  tonumber(r[4] or '0') or 0, tonumber(r[5] or '0') or 0, closed, tonumber(r[6] or '0') or 0, tonumber(r[7] or '0') or 0, now }
