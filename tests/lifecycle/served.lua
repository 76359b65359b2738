-- wrk script of the lifecycle suite: the bench's request and figures, plus who served each answer.
--
-- It loads benchmarks/wrk_script.lua (the request from BENCH_METHOD and BENCH_BODY_FILE, and
-- the "BENCH_JSON {...}" line of exact figures), then counts every answer by its status and
-- the version and alias that served it (headers X-Model-Version, X-Model-Alias). At the end it
-- prints one more line, "SERVED_JSON {"200 v1 champion": 5120, ...}", summed over the threads.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "../../benchmarks/wrk_script.lua")

local bench_done = done
local threads = {}

-- Read from each thread's own Lua state by done(), so a global.
served = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  local key = string.format("%d %s %s", status,
    headers["X-Model-Version"] or "-", headers["X-Model-Alias"] or "-")
  served[key] = (served[key] or 0) + 1
end

function done(summary, latency, requests)
  bench_done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("served") or {}) do
      total[key] = (total[key] or 0) + count
    end
  end
  local parts = {}
  for key, count in pairs(total) do
    parts[#parts + 1] = string.format('"%s": %d', key, count)
  end
  io.write("SERVED_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
