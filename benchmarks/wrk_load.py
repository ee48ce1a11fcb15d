"""A phase of ``benchmarks/api.py`` driven by ``wrk`` (Debian's ``wrk``: a C load generator scripted in Lua).

On a 2-core machine the client competes with the service for the CPU: httpx on asyncio spends more CPU
per request than the service does, so it measures itself. ``wrk`` spends a few microseconds a request.
Each request gets a fresh event id (``<prefix><thread>-<n>``) and a random lead, so the store can be
checked afterwards: every answered item stored, none twice.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = """
local counter, prefix, threads = 0, "", 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  prefix = "%(prefix)s" .. id .. "-"
  math.randomseed(id * 7919 + 1)
end
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["Content-Type"] = "application/json"
local function lead()
  return string.format("%(lead_format)s", math.random(%(first)d, %(last)d))
end
local function event(n)
  return string.format('{"event_id":"%%s%%d","lead_id":"%%s","type":"page_view","occurred_at":"%(now)s","url":"/p"}',
    prefix, n, lead())
end
function request()
  counter = counter + 1
  %(body)s
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "non2xx": %%d, "socket_errors": %%d, "seconds": %%.3f, ' ..
    '"p50_ms": %%.2f, "p95_ms": %%.2f, "p99_ms": %%.2f, "max_ms": %%.2f}\\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""

BODIES = {
    "single": 'return wrk.format("POST", "/v1/events", nil, event(counter))',
    "batch": (
        "local items = {}\n  for i = 1, 500 do items[i] = event(counter * 1000 + i) end\n"
        '  return wrk.format("POST", "/v1/events", nil, "[" .. table.concat(items, ",") .. "]")'
    ),
    "lookup": 'return wrk.format("GET", "/v1/leads/" .. lead() .. "/score")',
    "fresh": 'return wrk.format("GET", "/v1/leads/%(fresh)s/score?fresh=true&product_line=crm-suite")',
}
ITEMS = {"single": 1, "batch": 500, "lookup": 1, "fresh": 1}


def available() -> bool:
    return shutil.which("wrk") is not None


def run(base: str, key: str, kind: str, seconds: float, connections: int, **values: Any) -> dict[str, Any]:
    """One bounded phase: ``connections`` keep-alive connections on one wrk thread for ``seconds``.
    ``values``: ``now`` (the events' time), ``lead_format`` (a printf format of a lead id) with the
    numbers ``first``…``last`` the events and look-ups pick from at random, ``fresh`` (the lead of the
    ``fresh=true`` look-ups), ``prefix`` of the event ids."""
    fields = {"key": key, "prefix": values.get("prefix", "x-"), **values}
    script = SCRIPT % {**fields, "body": BODIES[kind] % fields}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    duration = f"-d{max(1, round(seconds))}s"
    command = ["wrk", "-t1", f"-c{connections}", duration, "--timeout", "30s", "-s", handle.name, base]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    output = done.stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(handle.name).unlink()
    line = next(line for line in output.splitlines() if line.startswith("WRK "))
    result = json.loads(line[4:])
    answered = result["requests"] - result["non2xx"]
    elapsed = result["seconds"]
    return {
        **result,
        "requests_per_s": round(result["requests"] / elapsed),
        "items_per_s": round(answered * ITEMS[kind] / elapsed),
        "accepted": answered * ITEMS[kind] if kind in ("single", "batch") else 0,
        "client_cpu_ms_per_request": round(
            1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / max(result["requests"], 1),
            3,
        ),
    }
