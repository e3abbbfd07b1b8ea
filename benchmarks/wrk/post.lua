-- POST one form per request to /oauth/token, from a file of pre-minted bodies.
-- wrk -t1 -c N -d S --latency -s post.lua URL -- BODIES_FILE OFFSET MODE AUTHORIZATION [LIMIT [RAMP_MS N]]
--   MODE "reuse": send the file's first body forever (client_credentials);
--   MODE "once":  send each body once, starting at byte OFFSET of the file (the start of a
--                 line), at most LIMIT bodies (codes, refresh tokens).
--   RAMP_MS, N:   hold the first request of each of the N connections RAMP_MS after it
--                 connects, so the server accepts them all before the load starts (wrk
--                 starts a request's clock when it writes it); later requests go at once.
-- Only the bodies this run may send are read: init() runs before wrk starts its clock, and
-- reading a whole pool of 10^5 bodies each run would cost more than a short run lasts.
-- done() prints one JSON line that benchmarks/stage_http.py reads.

local bodies = {}
local idx = 0
local fixed = nil
local ramp_ms = 0
local held = 0

function init(args)
  local offset = tonumber(args[2] or "0")
  local reuse = args[3] == "reuse"
  local limit = reuse and 1 or tonumber(args[5] or "0")
  ramp_ms = tonumber(args[6] or "0")
  held = tonumber(args[7] or "0")
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = args[4]
  local file = assert(io.open(args[1], "rb"))
  file:seek("set", offset)
  for line in file:lines() do
    if limit > 0 and #bodies >= limit then break end
    if line ~= "" then
      bodies[#bodies + 1] = line
    end
  end
  file:close()
  if reuse then
    fixed = wrk.format("POST", "/oauth/token", nil, bodies[1])
  end
end

function request()
  if fixed then
    return fixed
  end
  idx = idx + 1
  -- Past the end of the pool: a request that must fail, so it is counted as an error.
  return wrk.format("POST", "/oauth/token", nil, bodies[idx] or "grant_type=exhausted")
end

-- wrk asks before every request; the first N asks are the connections' first requests
-- (no response can arrive before the ramp ends).
function delay()
  if held > 0 then
    held = held - 1
    return ramp_ms
  end
  return 0
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
