--[[
  Deletes an image's payload and uncounts it: it was uploaded, or it can never be.

  Input:
    KEYS[1] payload
    KEYS[2] backlog bytes counter
    KEYS[3] backlog sizes hash
    KEYS[4] backlog expiry set

    ARGV[1] cache key

  Output: 1
]]
local rcall = redis.call

--- @include "releasePayload"

rcall("DEL", KEYS[1])
releasePayload(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
return 1
