--[[
  The proxy's hand-off when the bytes share the queue's Redis: reads the image's job state and
  keeps or drops the staged bytes (SET just before, on the same connection) in one step.
  The dedup rule itself is not here: the caller passes the store mode of each state (dedup.ts).

  Input:
    KEYS[1] uploaded marker
    KEYS[2] job hash
    KEYS[3] failed set
    KEYS[4] completed set
    KEYS[5] staged bytes
    KEYS[6] payload
    KEYS[7] backlog bytes counter
    KEYS[8] backlog sizes hash
    KEYS[9] backlog expiry set

    ARGV[1] cache key (the job id)
    ARGV[2] payload TTL in seconds
    ARGV[3] backlog maximum in bytes
    ARGV[4..8] store mode for the states uploaded, live, failed, completed, none
    ARGV[9] '1' when the proxy found no object in the bucket (its uploaded marker is out of date)

  Output: { job state, store result }
]]
local rcall = redis.call

--- @include "jobState"
--- @include "storePayload"

local id = ARGV[1]
local modes = { uploaded = ARGV[4], live = ARGV[5], failed = ARGV[6], completed = ARGV[7], none = ARGV[8] }
local state = jobState(KEYS[1], KEYS[2], KEYS[3], KEYS[4], id, ARGV[9])
local result = storePayload(KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], id, modes[state], ARGV[2], ARGV[3])
return { state, result }
