--[[
  What the queue knows of an image, for the dedup rule (packages/shared/src/dedup.ts). With
  objectGone ('1': the proxy found no object in the bucket) the uploaded marker is out of date:
  it is deleted and the image counts as not uploaded, so that it is stored again.

    'uploaded'  its uploaded marker is set
    'failed'    its job is in the failed set
    'completed' its job is kept in the completed set
    'live'      its job exists in any other state (waiting, active, delayed, prioritized)
    'none'      no job
]]
local function jobState(uploadedKey, jobKey, failedKey, completedKey, id, objectGone)
  if objectGone == "1" then
    rcall("DEL", uploadedKey)
  elseif rcall("EXISTS", uploadedKey) == 1 then
    return "uploaded"
  end
  if rcall("EXISTS", jobKey) == 0 then return "none" end
  if rcall("ZSCORE", failedKey, id) then return "failed" end
  if rcall("ZSCORE", completedKey, id) then return "completed" end
  return "live"
end
