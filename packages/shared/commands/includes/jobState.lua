--[[
  What the queue knows of an image, for the dedup rule (packages/shared/src/dedup.ts):
    'uploaded'  its uploaded marker is set
    'failed'    its job is in the failed set
    'completed' its job is kept in the completed set
    'live'      its job exists in any other state (waiting, active, delayed, prioritized)
    'none'      no job
]]
local function jobState(uploadedKey, jobKey, failedKey, completedKey, id)
  if rcall("EXISTS", uploadedKey) == 1 then return "uploaded" end
  if rcall("EXISTS", jobKey) == 0 then return "none" end
  if rcall("ZSCORE", failedKey, id) then return "failed" end
  if rcall("ZSCORE", completedKey, id) then return "completed" end
  return "live"
end
