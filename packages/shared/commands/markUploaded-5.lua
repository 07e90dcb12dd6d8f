--[[
  The image is in the bucket: remember it as uploaded, delete its payload and uncount it, in one
  step (the payloads share the queue's Redis).

  Input:
    KEYS[1] uploaded marker
    KEYS[2] payload
    KEYS[3] backlog bytes counter
    KEYS[4] backlog sizes hash
    KEYS[5] backlog expiry set

    ARGV[1] cache key
    ARGV[2] uploaded marker TTL in seconds

  Output: 1
]]
local rcall = redis.call

--- @include "releasePayload"

rcall("SET", KEYS[1], "1", "EX", ARGV[2])
rcall("DEL", KEYS[2])
releasePayload(KEYS[3], KEYS[4], KEYS[5], ARGV[1])
return 1
