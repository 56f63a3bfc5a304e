-- wrk script: POST /token, grant_type=client_credentials, HTTP Basic client authentication.
-- Usage (bench.py does this): ZB_AUTH="Basic ..." ZB_BODY="grant_type=client_credentials" \
--   wrk -t2 -c64 -d10s --latency -s bench/token.lua http://127.0.0.1:PORT/token
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
require("common").install("token")
