-- wrk script for Latchkey's API-key benches: one fixed request (any method, headers and body
-- from the environment), non-2xx answers and 2xx answers whose body lacks BENCH_EXPECT
-- counted, one JSON summary line written to BENCH_OUT at the end (the fields of the shared
-- harness's lines, so the two read alike).
--
--   BENCH_METHOD  GET | POST (GET)
--   BENCH_AUTH    Authorization header value (optional)
--   BENCH_BODY    request body (optional; sent form-encoded)
--   BENCH_EXPECT  Lua pattern a 2xx body must contain (optional)
--   BENCH_OUT     file for the JSON line (stdout when unset)

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  bad_body = 0
  local method = os.getenv("BENCH_METHOD") or "GET"
  if method == "" then method = "GET" end
  local headers = { ["Accept"] = "application/json" }
  local auth = os.getenv("BENCH_AUTH")
  if auth and auth ~= "" then headers["Authorization"] = auth end
  local body = os.getenv("BENCH_BODY")
  if body == "" then body = nil end
  if body then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  expect = os.getenv("BENCH_EXPECT")
  if expect == "" then expect = nil end
  req = wrk.format(method, nil, headers, body)
end

function request()
  return req
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif expect and not string.find(body or "", expect) then
    bad_body = bad_body + 1
  end
end

local function ms(us)
  return string.format("%.3f", us / 1000.0)
end

function done(summary, latency, requests)
  local n_non2xx, n_bad = 0, 0
  for _, thread in ipairs(threads) do
    n_non2xx = n_non2xx + (thread:get("non2xx") or 0)
    n_bad = n_bad + (thread:get("bad_body") or 0)
  end
  local seconds = summary.duration / 1000000.0
  local line = string.format(
    '{"rps":%.1f,"p50_ms":%s,"p90_ms":%s,"p99_ms":%s,"max_ms":%s,"non2xx":%d,"bad_body":%d,"requests":%d}',
    summary.requests / seconds,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency.max), n_non2xx, n_bad, summary.requests)
  local out = os.getenv("BENCH_OUT")
  if out and out ~= "" then
    local f = assert(io.open(out, "w"))
    f:write(line, "\n")
    f:close()
  else
    io.write(line, "\n")
  end
end
