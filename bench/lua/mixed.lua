-- Rank with fresh eventIds and reward a share of them, at a target request rate.
-- wrk args: TAILS_FILE ID_PREFIX RATE LAG SHARE_PERCENT.
-- RATE is requests/s for the whole run (0: as fast as possible); a reward goes out only LAG
-- requests after its rank was sent, so the rank has been answered by then.
local ffi = require("ffi")

ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local tails = {}
local prefix = "m"
local interval = 0
local lag = 64
local share = 50
local sent = 0
local ranked = 0
local pending = {}    -- event numbers waiting for their reward, oldest first
local pending_at = {} -- request count when each was ranked
local head = 1        -- oldest waiting entry
local tail = 0        -- newest waiting entry
local next_slot = nil
local headers = { ["Content-Type"] = "application/json" }
local bodies = { '{"value":0.0}', '{"value":0.25}', '{"value":0.5}', '{"value":0.75}',
                 '{"value":1.0}' }

function init(args)
  for line in io.lines(args[1]) do
    tails[#tails + 1] = line
  end
  prefix = args[2]
  local rate = tonumber(args[3])
  if rate > 0 then interval = 1000 / rate end
  lag = tonumber(args[4])
  share = tonumber(args[5])
end

function delay()
  if interval == 0 then return 0 end
  local t = now_ms()
  if next_slot == nil or t - next_slot > 1000 then next_slot = t end
  next_slot = next_slot + interval
  local d = next_slot - t
  if d <= 0 then return 0 end
  return math.floor(d)
end

function request()
  sent = sent + 1
  if head <= tail and sent - pending_at[head] > lag then
    local i = pending[head]
    pending[head] = nil
    pending_at[head] = nil
    head = head + 1
    return wrk.format("POST", "/v1/events/" .. prefix .. i .. "/reward", headers,
                      bodies[(i % 5) + 1])
  end
  local i = ranked
  ranked = ranked + 1
  if i % 100 < share then
    tail = tail + 1
    pending[tail] = i
    pending_at[tail] = sent
  end
  local body = '{"eventId":"' .. prefix .. i .. '",' .. tails[(i % #tails) + 1]
  return wrk.format("POST", "/v1/rank", headers, body)
end
