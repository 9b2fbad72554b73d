-- Argo CD health check for every Stella Ops kind (group stella-ops.org).
-- Install it as resource.customizations.health.stella-ops.org_<Kind> (or the wildcard
-- key stella-ops.org_* on Argo CD 2.10 and later); see docs/gitops.md.
--
-- The operator reports each resource's state in a Ready condition whose reason says which
-- state it is in. Ready=True is Healthy. A False Ready is Progressing when its reason is a
-- state the operator leaves on its own (a Scan waiting for a slot, a mirror waiting for
-- its first sync), Suspended when someone paused the resource, and Degraded otherwise
-- (a missing Secret, a failed scan, a refused release: something a person must fix).
-- Until the operator has looked at the current generation nothing is known: Progressing.

local progressing = {
  Scan = { Queued = true, Scanning = true, PolicyNotReady = true },
  ScanPolicy = {},
  Schedule = {},
  NotifyRule = { WorkerNotReady = true },
  FederationSite = { CronJobMissing = true },
  MirrorDomain = { AwaitingFirstSync = true, ReplicasNotReady = true },
  ZastavaPolicy = {},
  Platform = { Upgrading = true },
}
local suspended = {
  Schedule = { Suspended = true },
  NotifyRule = { Disabled = true },
  FederationSite = { Suspended = true },
  Platform = { Paused = true },
}
-- Every kind: the operator has not reconciled the spec yet.
local progressing_everywhere = { AwaitingController = true }

local hs = { status = "Progressing", message = "Waiting for the operator" }

local function condition(conditions, kind)
  for _, c in ipairs(conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local generation = obj.metadata and obj.metadata.generation
local status = obj.status
if status == nil then
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready == nil then
  return hs
end
local reason = ready.reason or ""
local message = ready.message or reason
if message == "" then
  message = reason
end

if ready.status == "True" then
  -- A Platform rolling out stays Ready (the previous release serves) but is not settled.
  local rolling = condition(status.conditions, "Progressing")
  if obj.kind == "Platform" and rolling ~= nil and rolling.status == "True" then
    hs.status = "Progressing"
    hs.message = rolling.message or rolling.reason or "Rolling out"
    return hs
  end
  hs.status = "Healthy"
  hs.message = message
  return hs
end

local kind_progressing = progressing[obj.kind] or {}
local kind_suspended = suspended[obj.kind] or {}
if ready.status == "Unknown" or kind_progressing[reason] or progressing_everywhere[reason] then
  hs.status = "Progressing"
elseif kind_suspended[reason] then
  hs.status = "Suspended"
else
  hs.status = "Degraded"
end
hs.message = reason .. ": " .. message
return hs
