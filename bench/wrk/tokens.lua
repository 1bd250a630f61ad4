-- wrk script for bench/run.py: rotate through a token file, check every response's status.
--
--   wrk ... -s tokens.lua URL -- TOKENS EXPECTED [START] [STOP_AFTER] [METHOD] [PATH] [BODY_FILE]
--
--   TOKENS      file with one JWT per line; request i carries `Authorization: Bearer <token i>`
--   EXPECTED    the status every response must have (200, or 401 for invalid tokens)
--   START       index to start from (0-based), so successive runs continue the rotation
--   STOP_AFTER  stop the thread after this many responses (0 = run for the whole duration)
--   METHOD PATH request line (default GET /)
--   BODY_FILE   request body (sent with content-type: application/json)
--
-- done() prints one line `BENCH_RESULT {json}` that run.py parses: request count, duration,
-- latency percentiles (microseconds), responses with/without the expected status, and wrk's
-- socket error counters.  Run with -t1 (the harness does); counters are summed over threads.

local tokens = {}
local count = 0
local index = 0
local method = "GET"
local path = "/"
local body = nil
local headers = {}
local stop_after = 0

-- per-thread globals, read by done() through thread:get()
ok = 0
bad = 0
bad_codes = ""
local seen_bad = {}

function init(args)
  local file = args[1]
  expected = tonumber(args[2]) or 200
  local start = tonumber(args[3] or "0") or 0
  stop_after = tonumber(args[4] or "0") or 0
  if args[5] and #args[5] > 0 then method = args[5] end
  if args[6] and #args[6] > 0 then path = args[6] end
  local body_file = args[7]
  for line in io.lines(file) do
    if #line > 0 then
      count = count + 1
      tokens[count] = line
    end
  end
  if count == 0 then
    error("no tokens in " .. tostring(file))
  end
  index = start % count
  if body_file and #body_file > 0 then
    local f = assert(io.open(body_file, "rb"))
    body = f:read("*a")
    f:close()
    headers["Content-Type"] = "application/json"
  end
end

function request()
  index = index + 1
  if index > count then index = 1 end
  headers["Authorization"] = "Bearer " .. tokens[index]
  return wrk.format(method, path, headers, body)
end

function response(status, hdrs, resp_body)
  if status == expected then
    ok = ok + 1
  else
    bad = bad + 1
    if not seen_bad[status] then
      seen_bad[status] = true
      bad_codes = bad_codes .. tostring(status) .. " "
    end
  end
  if stop_after > 0 and ok + bad >= stop_after then
    wrk.thread:stop()
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local n_ok, n_bad, codes = 0, 0, ""
  for _, t in ipairs(threads) do
    n_ok = n_ok + (t:get("ok") or 0)
    n_bad = n_bad + (t:get("bad") or 0)
    codes = codes .. (t:get("bad_codes") or "")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"mean_us":%.1f,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,' ..
    '"ok":%d,"bad":%d,"bad_codes":"%s",' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    n_ok, n_bad, codes,
    e.connect, e.read, e.write, e.status, e.timeout))
end
