-- Waiting-room helpers (docs/waiting-room.md), prepended after _lib.lua to the scripts that touch a
-- room: allocate, cancel, expire and the room_* scripts. A room's keys arrive in a table
-- rk = { stock, room, pre, line, admitted, tickets, ... }, all in the stock's slot and all from KEYS.
-- A ticket is one JSON field of the tickets hash: u user id, s state (waiting | admitted | done |
-- expired), k the secret half of its admission token, j joined at (ms), p 1 when it joined the
-- pre-queue, n arrival number; once admitted: q units it may take, a admitted at, x admission expiry.
-- The room hash keeps: ttl (admission seconds), seed and commitment, drawn ('1' once the pre-queue is
-- drawn and the seed revealed), seq, reserved (units promised to admitted, unresolved tickets),
-- admissions, waitedMs (sum of join→admission), done, expired, firstAdmitAt.
-- Invariant kept by every script: reserved <= available, so admitted-and-unresolved <= available.

-- Arrivals after the start queue behind every drawn ticket (drawn ranks are 1..N, N < 10^12).
local ROOM_AFTER_START = 1e12
-- Most admissions one script makes; a larger batch waits for the next step (the expirer's sweep).
local ROOM_ADMIT_BATCH = 1000

local function room_get_ticket(rk, ticket_id)
  local raw = redis.call('HGET', rk.tickets, ticket_id)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function room_put_ticket(rk, ticket_id, t)
  redis.call('HSET', rk.tickets, ticket_id, cjson.encode(t))
end

-- An admitted ticket ends: 'done' (its allocation succeeded) or 'expired' (unused for the TTL).
-- Its reserved units go back to the room (room_fill then gives them to the next ticket).
local function room_resolve(rk, ticket_id, t, state)
  t.s = state
  room_put_ticket(rk, ticket_id, t)
  redis.call('ZREM', rk.admitted, ticket_id)
  redis.call('HINCRBY', rk.room, 'reserved', -(tonumber(t.q) or 0))
  redis.call('HINCRBY', rk.room, state, 1)
end

-- The pre-queue is drawn and the seed revealed: from now on admissions follow the line.
local function room_reveal(rk, now)
  redis.call('HSET', rk.room, 'drawn', '1', 'drawnAt', now)
end

-- Admits tickets from the head of the line while units are free (available - reserved), each for
-- min(perUserLimit, free) units, until ROOM_ADMIT_BATCH. Nothing before the draw, after the end, or
-- on a stock without a room. Returns how many it admitted.
local function room_fill(rk, now)
  local r = redis.call('HMGET', rk.room, 'ttl', 'drawn', 'reserved')
  if not r[1] or r[2] ~= '1' then return 0 end
  local ttl_ms, reserved = tonumber(r[1]) * 1000, tonumber(r[3] or '0') or 0
  local s = redis.call('HMGET', rk.stock, 'available', 'perUserLimit', 'endsAt')
  local available, limit = tonumber(s[1]), tonumber(s[2])
  if not available or not limit then return 0 end
  if s[3] and s[3] ~= '' and now >= tonumber(s[3]) then return 0 end
  local free, admitted, waited = available - reserved, 0, 0
  while free > 0 and admitted < ROOM_ADMIT_BATCH do
    local head = redis.call('ZPOPMIN', rk.line)
    if #head == 0 then break end
    local t = room_get_ticket(rk, head[1])
    if t and t.s == 'waiting' then
      local units = math.min(limit, free)
      t.s, t.q, t.a, t.x = 'admitted', units, now, now + ttl_ms
      room_put_ticket(rk, head[1], t)
      redis.call('ZADD', rk.admitted, t.x, head[1])
      free, reserved, admitted = free - units, reserved + units, admitted + 1
      waited = waited + (now - (tonumber(t.j) or now))
    end
  end
  if admitted > 0 then
    redis.call('HSET', rk.room, 'reserved', reserved)
    redis.call('HINCRBY', rk.room, 'admissions', admitted)
    redis.call('HINCRBY', rk.room, 'waitedMs', waited)
    redis.call('HSETNX', rk.room, 'firstAdmitAt', now)
  end
  return admitted
end

-- Nothing can come back: no unit left and no live hold (or the sale is over). Waiting tickets read
-- as sold_out from this alone, so the end of the wait costs no write per ticket.
local function room_closed(available, held, ends_at, now)
  if ends_at and now >= ends_at then return true end
  return available <= 0 and held <= 0
end
