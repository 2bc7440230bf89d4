-- GET a random key per request, one wrk thread per target address, each thread with
-- its own key file:
--   BENCH_WRK_TARGETS=host:port=KEYFILE,host:port=KEYFILE wrk -tN ... -s route.lua URL -- PREFIX
-- Routing-aware: thread i talks to member i and picks only keys member i owns.
-- Random member: every thread picks from all keys, so a key meets a member at random.
-- wrk calls setup(thread) in its main Lua state once per thread before the threads
-- start; thread.addr sets where that thread connects, thread:set a global of its state.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local targets = {}
local threads = {}
local keys, prefix
count = 0  -- global: done() reads it per thread with thread:get

function setup(thread)
  if #targets == 0 then
    local spec = assert(os.getenv("BENCH_WRK_TARGETS"), "BENCH_WRK_TARGETS is not set")
    for host, port, file in spec:gmatch("([^,=]+):(%d+)=([^,]+)") do
      targets[#targets + 1] = { host = host, port = port, file = file }
    end
    assert(#targets > 0, "BENCH_WRK_TARGETS names no host:port=file")
  end
  local t = targets[#threads % #targets + 1]
  thread.addr = assert(wrk.lookup(t.host, t.port)[1], "cannot resolve " .. t.host)
  thread:set("keyfile", t.file)
  thread:set("target", t.host .. ":" .. t.port)
  threads[#threads + 1] = thread
end

function init(args)
  keys = common.load(keyfile)
  prefix = args[1] or "/users/"
  common.seed()
end

function request()
  count = count + 1
  return wrk.format("GET", prefix .. keys[math.random(#keys)])
end

function done(summary, latency, requests)
  common.done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    parts[#parts + 1] = string.format('"%s":%d', t:get("target"), t:get("count"))
  end
  io.write("WRKTARGETS {" .. table.concat(parts, ",") .. "}\n")
end
