-- wrk script: adds optional headers taken from the environment to every request.
--   BENCH_TOKEN   -> "Authorization: Bearer <token>"   (JWT scenarios)
--   BENCH_COOKIE  -> "Cookie: <name=value>"            (session and sticky scenarios)
--   BENCH_CLOSE=1 -> "Connection: close"               (a new connection per request)
-- Only wrk.headers is touched (no request() function), so wrk still builds the
-- request once and replays it: the script adds no per-request Lua cost.
-- (Adapted from the team's shared harness, shared/bench/headers.lua.)
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end
