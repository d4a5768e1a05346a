-- report.lua: wrk done() hook that prints one machine-readable JSON line,
-- prefixed with "WRK_JSON ", so the runner never scrapes wrk's text output.
-- Use it directly (-s report.lua) for plain GETs; other scripts dofile() it.
--
-- wrk itself only counts status >= 400 as errors.status. To count every
-- non-2xx response exactly, set WRK_COUNT_NON2XX=1: that installs a
-- response() hook, which makes wrk parse headers into Lua for every response
-- and costs throughput, so it is off by default.

local count_non2xx = os.getenv("WRK_COUNT_NON2XX") == "1"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if count_non2xx then
  non2xx = 0
  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    end
  end
end

local function pct(latency, p)
  return latency:percentile(p)
end

function done(summary, latency, requests)
  local non2xx_total = summary.errors.status
  local non2xx_source = "wrk_status_ge_400"
  if count_non2xx then
    non2xx_total = 0
    for _, t in ipairs(threads) do
      non2xx_total = non2xx_total + (t:get("non2xx") or 0)
    end
    non2xx_source = "response_hook"
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  -- Numbers only, so string.format is enough to emit valid JSON.
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.2f,' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"non2xx":%d,"non2xx_source":"%s"}\n',
    summary.requests, summary.duration, summary.bytes, summary.requests / secs,
    latency.min, latency.mean, latency.stdev, latency.max,
    pct(latency, 50), pct(latency, 90), pct(latency, 99), pct(latency, 99.9),
    e.connect, e.read, e.write, e.status, e.timeout,
    non2xx_total, non2xx_source))
end
