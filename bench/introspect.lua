-- wrk script: POST /introspect, token=<access token>, HTTP Basic client authentication.
-- With ZB_EXPECT='"active":true' a 200 answer that is not active counts as bad.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
require("common").install("introspect")
