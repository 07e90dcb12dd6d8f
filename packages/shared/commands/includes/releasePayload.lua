--[[
  Uncounts one payload from the backlog (its size is in the sizes hash while counted).
]]
local function releasePayload(bytesKey, sizesKey, expiryKey, id)
  local size = rcall("HGET", sizesKey, id)
  if size then
    rcall("DECRBY", bytesKey, size)
    rcall("HDEL", sizesKey, id)
    rcall("ZREM", expiryKey, id)
  end
end
