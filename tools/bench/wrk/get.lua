-- GET a random key of the list per request: wrk -s get.lua URL -- KEYFILE PREFIX
-- PREFIX is the path before the email: /users/ (kstate) or /user/ (faust peer).
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local keys, prefix

function init(args)
  keys = common.load(args[1])
  prefix = args[2] or "/users/"
  common.seed()
end

function request()
  return wrk.format("GET", prefix .. keys[math.random(#keys)])
end

done = common.done
