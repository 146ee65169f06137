-- wrk's done() hook: the run's figures as one JSON object, written to the file named by the
-- environment variable WRK_JSON (bench/wrk.py sets it and reads the file). Times are in
-- microseconds, as wrk keeps them.
done = function(summary, latency, requests)
  local out = assert(io.open(assert(os.getenv("WRK_JSON")), "w"))
  local errors = summary.errors
  out:write(string.format(
    '{"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, '
    .. '"errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, '
    .. '"latency_us": {"p50": %.0f, "p75": %.0f, "p90": %.0f, "p99": %.0f, "max": %.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max))
  out:close()
end
