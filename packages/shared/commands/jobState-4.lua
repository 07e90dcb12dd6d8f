--[[
  The image's job state, when its bytes live in another Redis (PAYLOAD_REDIS_URL).

  Input:
    KEYS[1] uploaded marker
    KEYS[2] job hash
    KEYS[3] failed set
    KEYS[4] completed set

    ARGV[1] cache key (the job id)
    ARGV[2] '1' when the proxy found no object in the bucket (its uploaded marker is out of date)

  Output: 'uploaded', 'failed', 'completed', 'live' or 'none'
]]
local rcall = redis.call

--- @include "jobState"

return jobState(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])
