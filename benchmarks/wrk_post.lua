-- wrk script for the serving benchmarks: POST one fixed JSON body, report as one JSON line.
--
-- Usage: wrk -s wrk_post.lua URL -- BODY_FILE
-- Every request is the same pre-formatted POST of BODY_FILE's bytes (Content-Type:
-- application/json) to URL's path. `done` prints one line starting with "WRKJSON "
-- followed by a JSON object: request count, duration, errors (socket connect/read/
-- write/timeout, and `status`: responses with an HTTP status > 399, which wrk calls
-- "Non-2xx or 3xx responses") and latency percentiles in microseconds.
-- No `response` function is defined, so wrk does not hand each response to Lua (that
-- would slow the load generator, which shares the machine's cores with the server).

local request_bytes

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s wrk_post.lua URL -- BODY_FILE")
  end
  local f = assert(io.open(path, "rb"))
  local body = f:read("*a")
  f:close()
  request_bytes = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function request()
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "timeout": %d, "status": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f, "stdev_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.timeout, e.status, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    latency.stdev))
end
