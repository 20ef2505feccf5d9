-- room_status: one user's ticket, as the poll answers it. Read only: polls never write.
-- An admission past its TTL reads as expired before the expirer's sweep records it; a waiting
-- ticket reads as sold_out once nothing can come back (no unit left and no live hold, or the end).
-- KEYS[1] stock hash      <p>:{s}:stock:<id>
-- KEYS[2] room hash       <p>:{s}:room:<id>
-- KEYS[3] pre-queue zset  <p>:{s}:room:<id>:pre
-- KEYS[4] line zset       <p>:{s}:room:<id>:line
-- KEYS[5] tickets hash    <p>:{s}:room:<id>:tickets
-- KEYS[6] users hash      <p>:{s}:room:<id>:users
-- ARGV[1] user id
-- Returns { 'none' } (no ticket, or no such room) | { 'corrupt', 'ticket' }
--       | { <state>, <ticket id>, <position>, <admission token or ''>, <now ms>, <startsAt ms>,
--           <admissions so far>, <first admission ms or ''>, <free units>, <admission ttl s> }
local ticket_id = redis.call('HGET', KEYS[6], ARGV[1])
if not ticket_id then return { 'none' } end
local raw = redis.call('HGET', KEYS[5], ticket_id)
if not raw then return { 'corrupt', 'ticket' } end
local t = cjson.decode(raw)
local s = redis.call('HMGET', KEYS[1], 'available', 'held', 'startsAt', 'endsAt')
local r = redis.call('HMGET', KEYS[2], 'drawn', 'admissions', 'firstAdmitAt', 'reserved', 'ttl')
local available, held, starts_at = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local ends_at = (s[4] and s[4] ~= '') and tonumber(s[4]) or nil
local now = now_ms()
local state, position, token = t.s, 0, ''
if t.s == 'admitted' then
  if now < tonumber(t.x) then token = ticket_id .. '.' .. t.k else state = 'expired' end
elseif t.s == 'waiting' then
  if room_closed(available, held, ends_at, now) then
    state = 'sold_out'
  else
    local rank = redis.call('ZRANK', KEYS[4], ticket_id)
    -- Before the draw a pre-queue ticket's place is unknown: at worst the last of the pre-queue.
    position = rank and rank + 1 or redis.call('ZCARD', KEYS[3])
  end
end
return { state, ticket_id, position, token, now, starts_at, tonumber(r[2] or '0') or 0, r[3] or '',
  available - (tonumber(r[4] or '0') or 0), tonumber(r[5] or '0') or 0 }
