-- wrk script for Latchkey's API-key benches: one fixed request (any method, headers and body
-- from the environment), error answers counted, one JSON summary line written to BENCH_OUT at
-- the end (the fields of the shared harness's lines, so the two read alike).
--
-- wrk sends the request as a fixed buffer and, unless BENCH_EXPECT is set, hands no answer to
-- Lua: wrk shares the cores with the server, and the per-answer hook (a Lua table of the
-- headers, the body as a Lua string) cost about a quarter more of wrk's CPU per request
-- (measured: 27-35 against 20-29 us per request). Answers of 400 and above are counted by wrk
-- itself (`non2xx` then counts those); with BENCH_EXPECT every answer is checked: non-2xx
-- answers, and 2xx answers whose body lacks the pattern (`bad_body`).
--
--   BENCH_METHOD  GET | POST (GET)
--   BENCH_AUTH    Authorization header value (optional)
--   BENCH_BODY    request body (optional; sent form-encoded)
--   BENCH_EXPECT  Lua pattern every 2xx body must contain (optional; installs the answer hook)
--   BENCH_OUT     file for the JSON line (stdout when unset)
--   BENCH_RATE    offered load in requests per second per wrk thread (optional; unset = as
--                 fast as the connections go). Each thread keeps a schedule of evenly spaced
--                 send times; a connection that is free waits for the next slot (wrk's delay(),
--                 whole milliseconds, so slots less than 1 ms away are sent at once). A send
--                 that leaves more than 1 ms after its slot, because every connection was still
--                 waiting for an answer, is counted as late: wrk measures latency from the send,
--                 so late sends are the part of a stall that the latency figures would not show.
--                 Every send's lag behind its slot is kept (0.1 ms steps), and p99_bound_ms
--                 adds the lag's p99.5 to the latency's p99.5: at most 1 % of requests took
--                 longer than that from their slot (what a client sending on a clock would
--                 see, stalls included).
--                 Needs LuaJIT's ffi (wrk's default build) for a monotonic clock.

local threads = {}

local clock_us = nil
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } latchkey_bench_timespec;
      int clock_gettime(int clock_id, latchkey_bench_timespec *tp);
    ]]
    local ts = ffi.new("latchkey_bench_timespec")
    clock_us = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
    end
  end
end

function setup(thread)
  table.insert(threads, thread)
end

-- The request, built once per thread by wrk from these (no request() function: a script
-- that has one is called for every request).
do
  local method = os.getenv("BENCH_METHOD") or "GET"
  if method == "" then method = "GET" end
  wrk.method = method
  wrk.headers["Accept"] = "application/json"
  local auth = os.getenv("BENCH_AUTH")
  if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
  local body = os.getenv("BENCH_BODY")
  if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
end

local expect = os.getenv("BENCH_EXPECT")
if expect == "" then expect = nil end
if expect then
  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    elseif not string.find(body or "", expect) then
      bad_body = bad_body + 1
    end
  end
end

function init(args)
  non2xx = 0
  bad_body = 0
  local rate = tonumber(os.getenv("BENCH_RATE") or "")
  if rate and rate > 0 then
    assert(clock_us, "BENCH_RATE needs wrk built with LuaJIT (ffi)")
    interval_us = 1000000 / rate
    late = 0
    sent = 0
    late_max_us = 0
    lags = {} -- lag behind the slot, in 0.1 ms steps -> sends
    delay = paced_delay
  end
end

-- The next slot on this thread's schedule; called by wrk before every request when set.
function paced_delay()
  local now = clock_us()
  if next_slot == nil then next_slot = now end
  local slot = next_slot
  next_slot = next_slot + interval_us
  sent = sent + 1
  local lag = now - slot
  local step = lag > 0 and math.floor(lag / 100) or 0
  lags[step] = (lags[step] or 0) + 1
  if lag > 1000 then
    late = late + 1
    if lag > late_max_us then late_max_us = lag end
  end
  if slot <= now then return 0 end
  return math.floor((slot - now) / 1000)
end

local function ms(us)
  return string.format("%.3f", us / 1000.0)
end

-- The upper edge (in µs) of the 0.1 ms step below which p percent of the sends' lags fall.
function lag_percentile(lags, total, p)
  local steps = {}
  for step in pairs(lags) do table.insert(steps, step) end
  table.sort(steps)
  local seen = 0
  for _, step in ipairs(steps) do
    seen = seen + lags[step]
    if seen >= total * p / 100 then
      if step == 0 then return 0 end
      return (step + 1) * 100
    end
  end
  return 0
end

function done(summary, latency, requests)
  local n_non2xx, n_bad, n_late, n_sent, late_max = 0, 0, 0, 0, 0
  local all_lags = {}
  for _, thread in ipairs(threads) do
    n_non2xx = n_non2xx + (thread:get("non2xx") or 0)
    n_bad = n_bad + (thread:get("bad_body") or 0)
    n_late = n_late + (thread:get("late") or 0)
    n_sent = n_sent + (thread:get("sent") or 0)
    late_max = math.max(late_max, thread:get("late_max_us") or 0)
    for step, n in pairs(thread:get("lags") or {}) do
      all_lags[step] = (all_lags[step] or 0) + n
    end
  end
  local seconds = summary.duration / 1000000.0
  if not expect then n_non2xx = summary.errors.status end
  local line = string.format(
    '{"rps":%.1f,"p50_ms":%s,"p90_ms":%s,"p99_ms":%s,"max_ms":%s,"non2xx":%d,"bad_body":%s,"bodies_checked":%s,"requests":%d,"socket_errors":%d}',
    summary.requests / seconds,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency.max), n_non2xx, expect and tostring(n_bad) or "null",
    expect and "true" or "false", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout)
  if n_sent > 0 then
    local lag995 = lag_percentile(all_lags, n_sent, 99.5)
    line = string.format('%s,"late_pct":%.3f,"late_max_ms":%s,"lag_p99_ms":%s,"p99_bound_ms":%s}',
      line:sub(1, -2), 100.0 * n_late / n_sent, ms(late_max),
      ms(lag_percentile(all_lags, n_sent, 99)), ms(lag995 + latency:percentile(99.5)))
  end
  local out = os.getenv("BENCH_OUT")
  if out and out ~= "" then
    local f = assert(io.open(out, "w"))
    f:write(line, "\n")
    f:close()
  else
    io.write(line, "\n")
  end
end
