--[[
  Keeps or drops the staged bytes of one image, by the store mode the dedup rule gives for the
  image's job state:
    'never'     drop them
    'if-absent' keep them only when no payload is stored (its job is live and finds them)
    'always'    keep them, replacing any payload stored before

  Returns 'stored', 'present' (if-absent found a payload), 'skipped' (never), 'backlog-full',
  or 'lost' (the staged SET did not arrive: nothing was written).
]]
--- @include "releasePayload"

local function storePayload(stagedKey, payloadKey, bytesKey, sizesKey, expiryKey, id, mode, ttlSec, backlogMax)
  if mode == "never" then
    rcall("DEL", stagedKey)
    return "skipped"
  end
  if mode == "if-absent" and rcall("EXISTS", payloadKey) == 1 then
    rcall("DEL", stagedKey)
    return "present"
  end
  local size = rcall("STRLEN", stagedKey)
  if size == 0 then return "lost" end

  -- Payloads that expired before anyone uploaded them are uncounted here, a few at a time.
  local t = rcall("TIME")
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, gone in ipairs(rcall("ZRANGEBYSCORE", expiryKey, "-inf", now, "LIMIT", 0, 10)) do
    releasePayload(bytesKey, sizesKey, expiryKey, gone)
  end
  releasePayload(bytesKey, sizesKey, expiryKey, id)

  if tonumber(rcall("GET", bytesKey) or "0") + size > tonumber(backlogMax) then
    rcall("DEL", stagedKey)
    return "backlog-full"
  end
  rcall("RENAME", stagedKey, payloadKey)
  rcall("EXPIRE", payloadKey, ttlSec)
  rcall("INCRBY", bytesKey, size)
  rcall("HSET", sizesKey, id, size)
  rcall("ZADD", expiryKey, now + tonumber(ttlSec) * 1000, id)
  return "stored"
end
