-- room_join: a user takes a ticket in a stock's waiting room (one per user per stock).
-- Before startsAt the ticket joins the pre-queue (drawn at the start); after it, the back of the line.
-- A join after the start may admit at once (free units, empty line) and reveals an empty draw.
-- KEYS[1] stock hash      <p>:{s}:stock:<id>
-- KEYS[2] room hash       <p>:{s}:room:<id>
-- KEYS[3] pre-queue zset  <p>:{s}:room:<id>:pre        (ticket id scored by arrival number)
-- KEYS[4] line zset       <p>:{s}:room:<id>:line       (ticket id scored by admission order)
-- KEYS[5] admitted zset   <p>:{s}:room:<id>:admitted   (ticket id scored by admission expiry ms)
-- KEYS[6] tickets hash    <p>:{s}:room:<id>:tickets    (ticket id -> record JSON)
-- KEYS[7] users hash      <p>:{s}:room:<id>:users      (user id -> ticket id)
-- ARGV[1] user id   ARGV[2] new ticket id (random hex)   ARGV[3] its secret (random hex)
-- Returns { 'joined', <ticket id>, <1 when the pre-queue awaits its draw, else 0> } | { 'existing', <ticket id> }
--       | { 'sold_out' } | { 'ended' } | { 'not_found' } | { 'no_room' } | { 'corrupt', 'stock' }
local user_id, ticket_id, secret = ARGV[1], ARGV[2], ARGV[3]
local s = redis.call('HMGET', KEYS[1], 'available', 'held', 'startsAt', 'endsAt', 'keepUntil', 'roomTtl')
if not s[1] then return { 'not_found' } end
if not s[6] then return { 'no_room' } end
local existing = redis.call('HGET', KEYS[7], user_id)
if existing then return { 'existing', existing } end
local available, held, starts_at = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
local ends_at = (s[4] and s[4] ~= '') and tonumber(s[4]) or nil
local keep_until = s[5] and tonumber(s[5]) or nil
if not available or not held or not starts_at then return { 'corrupt', 'stock' } end
local now = now_ms()
if ends_at and now >= ends_at then return { 'ended' } end
if room_closed(available, held, ends_at, now) then return { 'sold_out' } end

local rk = { stock = KEYS[1], room = KEYS[2], pre = KEYS[3], line = KEYS[4], admitted = KEYS[5], tickets = KEYS[6] }
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local ticket = { u = user_id, s = 'waiting', k = secret, j = now, n = seq, p = 0 }
local pending = 0
if now < starts_at then
  ticket.p = 1
  redis.call('ZADD', KEYS[3], seq, ticket_id)
else
  redis.call('ZADD', KEYS[4], ROOM_AFTER_START + seq, ticket_id)
end
room_put_ticket(rk, ticket_id, ticket)
redis.call('HSET', KEYS[7], user_id, ticket_id)
if keep_until then
  for i = 3, 7 do redis.call('PEXPIREAT', KEYS[i], keep_until) end
end
if now >= starts_at and redis.call('HGET', KEYS[2], 'drawn') ~= '1' then
  -- Nobody joined before the start: the draw is empty and the seed can be revealed here.
  if redis.call('ZCARD', KEYS[3]) == 0 then room_reveal(rk, now) else pending = 1 end
end
room_fill(rk, now)
return { 'joined', ticket_id, pending }
