-- Prints one JSON line with throughput and latency percentiles (microseconds) when wrk is done.
-- With UNIQUE=1 in the environment every request asks for a different image path.
local unique = os.getenv("UNIQUE") == "1"
local counter = 0
local prefix = os.getenv("RUN_ID") or "run"

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("tid", tostring(thread_count))
end

function request()
  if unique then
    counter = counter + 1
    return wrk.format("GET", "/bench/rs:fit:" .. counter .. "/plain/" .. prefix .. "-" .. tid .. "-" .. counter .. ".jpg@png")
  end
  return wrk.format("GET", "/bench/rs:fit:300:300/plain/repeated.jpg@png")
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), latency.max))
end
