-- wrk script of `nox -s bench`: one fixed request per scenario, figures as one JSON line.
--
-- The request comes from the environment, so that one script serves every scenario:
--   BENCH_METHOD     GET or POST (default GET)
--   BENCH_BODY_FILE  file whose bytes are the body of every request (sent as application/json)
-- At the end, `done` prints a line "BENCH_JSON {...}" with exact figures (latencies in
-- microseconds); benchmarks/wrk.py reads it, and falls back to wrk's own text report.

wrk.method = os.getenv("BENCH_METHOD") or "GET"

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
