"""Any engine that can write to a sink, run in a worker process of its own."""

from engines.worker.engine import WorkerEngine

__all__ = ["WorkerEngine"]
