-- Argo CD health of a wabaplane PhoneNumber. Ready=True is Healthy; a number another PhoneNumber
-- holds (Conflict), one outside the tenant's WABA or a refused registration is Degraded; waiting
-- for the Tenant, for Meta, or for the operator to see the latest spec is Progressing.
local DEGRADED = {NumberClaimed = true, NotInWaba = true, RegistrationFailed = true, TokenInvalid = true,
                  SecretMissing = true, MetaError = true}

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
local conflict = condition(obj.status.conditions, "Conflict")
if conflict ~= nil and conflict.status == "True" then
  return {status = "Degraded", message = tostring(conflict.reason) .. ": " .. tostring(conflict.message)}
end
local ready = condition(obj.status.conditions, "Ready")
if ready == nil then return hs end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and DEGRADED[ready.reason] then
  hs.status = "Degraded"
end
hs.message = tostring(ready.reason) .. ": " .. tostring(ready.message)
return hs
