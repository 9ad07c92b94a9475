-- Synthesize over the generated corpus of `synth_bench --keep`: the queries come from the file
-- named by BENCH_QUERIES (one per line), the key from ENGRAM_KEY, the budget from BENCH_MAX_TOKENS.
local key = os.getenv("ENGRAM_KEY") or ""
local budget = os.getenv("BENCH_MAX_TOKENS") or "1000"
local queries = {}
for line in io.lines(os.getenv("BENCH_QUERIES")) do
  if line ~= "" then queries[#queries + 1] = line end
end
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"query":"%s","maxTokens":%s}', queries[(n % #queries) + 1], budget)
  return wrk.format("POST", "/v1/synthesize", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end
