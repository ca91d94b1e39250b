"""The gateway's benchmark harness: `python -m bench` (see bench/__main__.py, docs/performance.md).

Modules: `sse_client` (a cheap HTTP/1.1 + SSE client), `load` (closed-loop load
from several processes, measured in a window), `server` (servers under test as
child processes, CPU from /proc), `sweep` (the synthetic-engine sweep),
`preprocess` (prompt rendering), `compare` (against `transformers serve`),
`profile` (py-spy), `workload` and `report`. The package `gpu` (`python -m bench.gpu`) holds
the embedded engine's in-process throughput against the gateway's (docs/gpu-embedded.md).
"""
