-- POST /v1/events/{id}/reward over ids ranked before the run, each id once while they last.
-- wrk args: IDS_FILE OFFSET COUNT. Requests use ids OFFSET .. OFFSET+COUNT-1 of IDS_FILE (0-based)
-- and wrap within that slice if the run outlasts it.

local ids = {}
local offset = 0
local count = 1
local n = 0
local headers = { ["Content-Type"] = "application/json" }
local bodies = { '{"value":0.0}', '{"value":0.25}', '{"value":0.5}', '{"value":0.75}',
                 '{"value":1.0}' }

function init(args)
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  offset = tonumber(args[2])
  count = math.min(tonumber(args[3]), #ids - offset)
end

function request()
  local i = offset + (n % count)
  local body = bodies[(i % 5) + 1]
  n = n + 1
  return wrk.format("POST", "/v1/events/" .. ids[i + 1] .. "/reward", headers, body)
end
