--[[
  Keeps or drops staged bytes in the payload Redis (PAYLOAD_REDIS_URL), by the store mode the
  dedup rule gave for the image's job state.

  Input:
    KEYS[1] staged bytes
    KEYS[2] payload
    KEYS[3] backlog bytes counter
    KEYS[4] backlog sizes hash
    KEYS[5] backlog expiry set

    ARGV[1] cache key
    ARGV[2] store mode: 'never', 'if-absent' or 'always'
    ARGV[3] payload TTL in seconds
    ARGV[4] backlog maximum in bytes

  Output: 'stored', 'present', 'skipped', 'backlog-full' or 'lost'
]]
local rcall = redis.call

--- @include "storePayload"

return storePayload(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
