-- PUT a new name for a random key of the list per request (JSON body, acknowledged
-- write): wrk -s put.lua URL -- KEYFILE PREFIX
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local keys, prefix
local n = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  keys = common.load(args[1])
  prefix = args[2] or "/users/"
  common.seed()
end

function request()
  n = n + 1
  local email = keys[math.random(#keys)]
  local body = '{"name":"Bench Put ' .. n .. '","email":"' .. email .. '"}'
  return wrk.format("PUT", prefix .. email, headers, body)
end

done = common.done
