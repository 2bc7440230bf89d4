-- Shared by get.lua and put.lua: the key list (one email per line, file given after
-- `--` on wrk's command line) and a done() that prints one machine-readable line.
local M = {}

function M.load(path)
  local keys = {}
  local f = assert(io.open(path, "r"), "cannot open key file " .. tostring(path))
  for line in f:lines() do
    if #line > 0 then keys[#keys + 1] = line end
  end
  f:close()
  assert(#keys > 0, "empty key file " .. path)
  return keys
end

function M.seed()
  -- each wrk thread has its own Lua state: seed each differently (the address of a
  -- fresh table differs per state)
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed((os.time() + math.floor(os.clock() * 1e6) + addr) % 2147483647)
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end

return M
