-- Shared part of the wrk scripts in bench/: a form POST with HTTP Basic client authentication,
-- a per-thread count of bad responses, and one machine-readable summary line at the end.
--
-- Configured through the environment (set by bench/bench.py):
--   ZB_AUTH    value of the Authorization header, e.g. "Basic ZGVtby1iYWNrZW5kOnNlY3JldA=="
--   ZB_BODY    the x-www-form-urlencoded request body
--   ZB_EXPECT  (optional) a literal string every good response body must contain
--
-- A response is "bad" when its status is not 200, or when ZB_EXPECT is set and the body lacks it.
-- wrk counts every completed response as a request, so without this count an error storm would
-- look like throughput.

local M = {}

local threads = {}

function M.install(label)
  local auth = os.getenv("ZB_AUTH")
  local body = os.getenv("ZB_BODY")
  local expect = os.getenv("ZB_EXPECT")
  if expect == "" then expect = nil end
  if not auth or not body then
    io.stderr:write(label .. ".lua: ZB_AUTH and ZB_BODY must be set\n")
    os.exit(2)
  end

  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = auth
  wrk.headers["Accept"] = "application/json"

  -- Runs in the main Lua state once per thread, before the threads start.
  function setup(thread)
    table.insert(threads, thread)
  end

  -- Runs in each thread's own Lua state.
  function init(args)
    non200 = 0
    unexpected = 0
    first_status = 0
    first_body = ""
  end

  function response(status, headers, resp_body)
    if status ~= 200 then
      non200 = non200 + 1
      if first_status == 0 then
        first_status = status
        first_body = string.sub(resp_body or "", 1, 300)
      end
    elseif expect and not string.find(resp_body or "", expect, 1, true) then
      unexpected = unexpected + 1
      if first_body == "" then
        first_body = string.sub(resp_body or "", 1, 300)
      end
    end
  end

  -- Runs in the main Lua state after all threads have stopped.
  function done(summary, latency, requests)
    local bad_status, bad_body, status, sample = 0, 0, 0, ""
    for _, t in ipairs(threads) do
      bad_status = bad_status + (t:get("non200") or 0)
      bad_body = bad_body + (t:get("unexpected") or 0)
      local s = t:get("first_status") or 0
      if status == 0 and s ~= 0 then status = s end
      local b = t:get("first_body") or ""
      if sample == "" and b ~= "" then sample = b end
    end
    local e = summary.errors
    -- One line, parsed by bench.py. Latencies in microseconds, duration in microseconds.
    io.write(string.format(
      "ZB_RESULT label=%s requests=%d duration_us=%d bytes=%d "
        .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f "
        .. "non200=%d unexpected_body=%d first_bad_status=%d "
        .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      label, summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean,
      bad_status, bad_body, status,
      e.connect, e.read, e.write, e.status, e.timeout))
    if sample ~= "" then
      sample = string.gsub(sample, "[\r\n]", " ")
      io.write("ZB_BAD_SAMPLE " .. sample .. "\n")
    end
  end
end

return M
