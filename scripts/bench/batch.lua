-- 100 events per request; the key comes from ENGRAM_KEY.
local key = os.getenv("ENGRAM_KEY") or ""
local n = 0
request = function()
  n = n + 1
  local events = {}
  for j = 1, 100 do
    events[j] = string.format(
      '{"type":"message","sessionId":"wrk-%d","payload":{"role":"user","content":"batch %d event %d: deploy the payment service"},"metadata":{"agentId":"agent-%d"}}',
      (n * 100 + j) % 512, n, j, j % 4)
  end
  return wrk.format("POST", "/v1/capture/batch", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, '{"events":[' .. table.concat(events, ",") .. ']}')
end
