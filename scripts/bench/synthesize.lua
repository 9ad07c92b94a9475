-- A synthesize per request over a few queries; the key comes from ENGRAM_KEY.
local key = os.getenv("ENGRAM_KEY") or ""
local queries = {"deploy the payment service", "kubectl rollout status", "payment service errors", "rollback the api deployment"}
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"query":"%s","maxTokens":1000}', queries[(n % #queries) + 1])
  return wrk.format("POST", "/v1/synthesize", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end
