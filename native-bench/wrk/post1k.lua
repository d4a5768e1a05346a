-- post1k.lua: POST a fixed 1 KiB body (to /echo, the URL the runner passes)
-- and report results through report.lua's done() hook.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 64) -- 1024 bytes
wrk.headers["Content-Type"] = "application/octet-stream"
-- wrk adds Content-Length itself when wrk.body is set.
