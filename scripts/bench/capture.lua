-- One tool_call event per request, over 512 sessions; the key comes from ENGRAM_KEY. With
-- ENGRAM_DELAY_MS set, each connection waits that long between requests (wrk's `delay`), for a
-- steady offered rate of about connections × 1000 / (delay + latency) requests a second.
local key = os.getenv("ENGRAM_KEY") or ""
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"type":"tool_call","sessionId":"wrk-%d","payload":{"tool_name":"kubectl","input":"kubectl rollout status deploy/api-%d","output":"deployment successfully rolled out"},"metadata":{"agentId":"agent-%d"}}',
    n % 512, n % 97, n % 4)
  return wrk.format("POST", "/v1/capture", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end
local pause = tonumber(os.getenv("ENGRAM_DELAY_MS") or "")
if pause then
  delay = function()
    return pause
  end
end
