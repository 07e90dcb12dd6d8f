-- wrk: imgproxy-style paths, and one JSON line with throughput and latency (microseconds) at the end.
-- UNIQUE=1: every request asks for a new image (a new size, quality and cache buster), as a page
-- full of new images would; otherwise one image again and again. PATHS=<file>: one of the file's
-- paths (a line each) at random for every request: stored images, hot and cold alike.
local unique = os.getenv("UNIQUE") == "1"
-- ENCODED=1: the source percent-encoded (the Go tool's mux answers 301 to a path holding //)
local source = os.getenv("ENCODED") == "1" and "local:%2F%2F%2Fphoto.jpg" or "local:///photo.jpg"
local prefix = os.getenv("RUN_ID") or "run"
local counter = 0
local paths = nil
if os.getenv("PATHS") then
  paths = {}
  for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
end

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("tid", tostring(thread_count))
end

function init()
  math.randomseed(os.time() + (tonumber(tid) or 0) * 7919)
end

function request()
  if paths then
    return wrk.format("GET", paths[math.random(#paths)])
  end
  if not unique then
    return wrk.format("GET", "/bench/rs:fit:480:320/q:80/cb:repeated/plain/local:///photo.jpg@webp")
  end
  counter = counter + 1
  local w = 200 + (counter * 37) % 600
  local h = math.floor(w * 2 / 3)
  local q = 50 + counter % 40
  return wrk.format("GET", string.format("/bench/rs:fit:%d:%d/q:%d/cb:%s-%s-%d/plain/%s@webp", w, h, q, prefix, tid, counter, source))
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), latency.max))
end
