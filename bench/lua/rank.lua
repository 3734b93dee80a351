-- POST /v1/rank with a fresh eventId per request, cycling over the workload's bodies.
-- wrk args: TAILS_FILE ID_PREFIX. Each line of TAILS_FILE is a body without its opening brace.

local tails = {}
local prefix = "r"
local n = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  for line in io.lines(args[1]) do
    tails[#tails + 1] = line
  end
  prefix = args[2]
end

function request()
  local i = n
  n = n + 1
  local body = '{"eventId":"' .. prefix .. i .. '",' .. tails[(i % #tails) + 1]
  return wrk.format("POST", "/v1/rank", headers, body)
end
