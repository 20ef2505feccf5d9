-- room_sweep: the expirer's step for one room, every tick. Ends admissions unused for their TTL and
-- gives their units to the next tickets; reveals an empty draw at the start (a non-empty one needs
-- SHA-256: the answer draw_due sends the expirer to room_draw.lua); forgets a room that is over.
-- KEYS[1] stock hash      <p>:{s}:stock:<id>
-- KEYS[2] room hash       <p>:{s}:room:<id>
-- KEYS[3] pre-queue zset  <p>:{s}:room:<id>:pre
-- KEYS[4] line zset       <p>:{s}:room:<id>:line
-- KEYS[5] admitted zset   <p>:{s}:room:<id>:admitted
-- KEYS[6] tickets hash    <p>:{s}:room:<id>:tickets
-- KEYS[7] users hash      <p>:{s}:room:<id>:users
-- KEYS[8] draw list       <p>:{s}:room:<id>:draw
-- KEYS[9] shard rooms set <p>:{s}:rooms                 (stock ids whose rooms the expirer sweeps)
-- ARGV[1] stock id   ARGV[2] most admissions to expire (integer >= 1)
-- Returns { 'swept', <expired>, <admitted> } | { 'draw_due' } | { 'before_start' }
--       | { 'finished', <expired>, <admitted> } (removed from the rooms set) | { 'gone' } (stock deleted: room deleted too)
--       | { 'invalid', <argument> }
local stock_id, max_expire = ARGV[1], tonumber(ARGV[2])
if not max_expire or max_expire < 1 then return { 'invalid', 'maxExpire' } end
local s = redis.call('HMGET', KEYS[1], 'available', 'held', 'startsAt', 'endsAt')
local r = redis.call('HMGET', KEYS[2], 'drawn', 'ttl')
if not s[1] or not r[2] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
  redis.call('SREM', KEYS[9], stock_id)
  return { 'gone' }
end
local rk = { stock = KEYS[1], room = KEYS[2], pre = KEYS[3], line = KEYS[4], admitted = KEYS[5], tickets = KEYS[6] }
local now = now_ms()
if r[1] ~= '1' then
  if now < (tonumber(s[3]) or 0) then return { 'before_start' } end
  if redis.call('ZCARD', KEYS[3]) > 0 then return { 'draw_due' } end
  room_reveal(rk, now)
end

local expired = 0
for _, ticket_id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, max_expire)) do
  local t = room_get_ticket(rk, ticket_id)
  if t and t.s == 'admitted' then
    room_resolve(rk, ticket_id, t, 'expired')
    expired = expired + 1
  else
    redis.call('ZREM', KEYS[5], ticket_id)
  end
end
local admitted = room_fill(rk, now)

local ends_at = (s[4] and s[4] ~= '') and tonumber(s[4]) or nil
local available, held = tonumber(s[1]) or 0, tonumber(s[2]) or 0
if room_closed(available, held, ends_at, now) and redis.call('ZCARD', KEYS[5]) == 0 then
  redis.call('SREM', KEYS[9], stock_id)
  return { 'finished', expired, admitted }
end
return { 'swept', expired, admitted }
