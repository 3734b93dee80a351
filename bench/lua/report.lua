-- Prepended to every bench script by bench/wrk.py: done() prints one machine-readable line.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non_2xx":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,' ..
    '"mean":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
