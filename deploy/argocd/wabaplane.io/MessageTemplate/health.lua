-- Argo CD health of a wabaplane MessageTemplate. APPROVED and Ready is Healthy; PENDING (Meta's
-- review) is Progressing; REJECTED, PAUSED or DISABLED by Meta, a refused edit or an invalid
-- template is Degraded; a status older than the spec is Progressing.
local DEGRADED_STATUS = {REJECTED = true, PAUSED = true, DISABLED = true}
local DEGRADED_REASON = {Rejected = true, Paused = true, Disabled = true, EditNotAllowed = true,
                         InvalidTemplate = true, TokenInvalid = true, MetaError = true}

local function condition(conditions, wanted)
  for _, c in ipairs(conditions or {}) do
    if c.type == wanted then return c end
  end
  return nil
end

local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil or obj.status.observedGeneration == nil then return hs end
if obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(obj.metadata.generation)
  return hs
end
local ready = condition(obj.status.conditions, "Ready")
local synced = condition(obj.status.conditions, "Synced")
local template_status = obj.status.templateStatus
if template_status ~= nil and DEGRADED_STATUS[template_status] then
  local why = ready ~= nil and tostring(ready.message) or "see the MessageTemplate's status"
  return {status = "Degraded", message = "Meta set the template " .. template_status .. ": " .. why}
end
if synced ~= nil and synced.status == "False" and DEGRADED_REASON[synced.reason] then
  return {status = "Degraded", message = tostring(synced.reason) .. ": " .. tostring(synced.message)}
end
if ready == nil then return hs end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and DEGRADED_REASON[ready.reason] then
  hs.status = "Degraded"
end
hs.message = tostring(ready.reason) .. ": " .. tostring(ready.message)
return hs
