-- Argo CD health of a wabaplane Tenant. Ready=True is Healthy; a suspended tenant is Suspended;
-- a problem only a person can fix (a bad token, a missing Secret, a WABA another Tenant holds) is
-- Degraded; anything the operator is still working on, or a status older than the spec, is
-- Progressing.
local DEGRADED = {TokenInvalid = true, TokenScopeTooBroad = true, TokenScopeMissing = true,
                  SignupCodeRejected = true, SignupCodeMissing = true, SecretMissing = true, MetaError = true,
                  WabaClaimed = true}

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
if ready == nil then return hs end
local message = tostring(ready.reason) .. ": " .. tostring(ready.message)
if (obj.spec ~= nil and obj.spec.suspended == true) or ready.reason == "Suspended" then
  hs.status = "Suspended"
elseif ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and DEGRADED[ready.reason] then
  hs.status = "Degraded"
end
hs.message = message
return hs
