--[[
  expire: releases one hold whose time is up and appends StockReleased(reason = expired).
  Safe to call from several expirers at once, and early or late: it re-checks status and expiry.
  KEYS[1] hold hash              <p>:{s}:hold:<allocationId>
  KEYS[2] stock hash             <p>:{s}:stock:<id>   (the hold's stock)
  KEYS[3] stock buyers hash      <p>:{s}:stock:<id>:buyers
  KEYS[4] shard due-holds zset   <p>:{s}:holds:due
  KEYS[5] shard outbox stream    <p>:{s}:outbox
  KEYS[6] shard released channel <p>:{s}:released   (sharded pub/sub: '<stock id> <version>' after the release)
  ARGV[1] allocation id   ARGV[2] event id (UUIDv7)   ARGV[3] seconds to keep the finished hold readable
  Returns { 'expired' } | { 'not_due' } | { 'not_active' } (hold gone or finished; its due entry is dropped)
]]
local allocation_id = ARGV[1]

local hold = read_hold(KEYS[1])
if not hold or hold.status ~= 'held' then
  redis.call('ZREM', KEYS[4], allocation_id)
  return { 'not_active' }
end
local now = now_ms()
if now < tonumber(hold.expiresAt) then return { 'not_due' } end

local keys = { hold = KEYS[1], stock = KEYS[2], buyers = KEYS[3], due = KEYS[4], outbox = KEYS[5], released = KEYS[6] }
release_hold(keys, allocation_id, hold, 'expired', now, ARGV[2], tonumber(ARGV[3]))
return { 'expired' }
