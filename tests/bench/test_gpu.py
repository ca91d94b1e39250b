"""`python -m bench.gpu` (the embedded engine in-process against the gateway): that both
paths send the same requests, and a tiny random model on the CPU end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.gpu.workload import Prompt, Workload
from bench.load import LoadPlan, WindowStats, _Stream
from bench.sse_client import StreamRecord

_REPO = Path(__file__).resolve().parents[2]


def test_the_gateway_clients_send_what_the_engine_streams_get() -> None:
    prompts = tuple(Prompt(f"prompt {n}", [n]) for n in range(5))
    workload = Workload(prompts, max_tokens=16, first_max_tokens=(3, 9, 1, 12))
    bodies, first = workload.chat_bodies("m")
    plan = LoadPlan("127.0.0.1", 1, "/", 4, bodies, 0.0, 0.0, (0.0, 1.0), 1.0, first)
    for stream in range(4):
        client = _Stream(plan, stream, WindowStats())
        sent: list[bytes] = []

        async def capture(path: str, body: bytes, sent: list[bytes] = sent) -> StreamRecord:
            sent.append(body)
            return StreamRecord(sent=0.0)

        client._connection.stream = capture  # type: ignore[method-assign]
        for number in range(7):
            asyncio.run(client.send(number))
            prompt, max_tokens = workload.request(stream, number)
            body = orjson.loads(sent[-1])
            assert body["messages"][0]["content"] == prompt.content
            assert (body["max_tokens"], body["temperature"]) == (max_tokens, 0.0)
    assert [workload.request(s, 0)[1] for s in range(4)] == [3, 9, 1, 12]
    assert workload.request(1, 1) == (prompts[2], 16)


@pytest.mark.model  # its tokenizer: the embedded SmolLM2's (converted once, then cached)
def test_tiny_model_on_the_cpu_end_to_end(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = {
        "tokenizer-dir": model_dir, "work": tmp_path / "work", "out": out, "shape": "tiny",
        "device": "cpu", "dtype": "float32", "streams": 2, "prompt-len": 64, "max-tokens": 16,
        "warmup": 1, "window": 2, "num-blocks": 16, "max-batch-size": 8,
        "max-batch-tokens": 256, "client-procs": 1, "prompts": 8, "deadline": 120,
    }  # fmt: skip
    arguments = [f"--{name}={value}" for name, value in options.items()]
    command = [sys.executable, "-m", "bench.gpu", *arguments]
    run = subprocess.run(command, cwd=_REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    last = run.stdout.splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last.removeprefix("RESULT "))
    assert result["engine_tok_s"]["2"] > 0 and result["gateway_tok_s"]["2"] > 0
    assert result["ratio"]["2"] > 0
    results = json.loads((out / "results.json").read_text())
    assert results["workload"]["prompt_tokens"] == {"min": 64, "mean": 64, "max": 64}
    (row,) = results["rows"]
    for path in ("engine", "gateway"):
        assert row[path]["error_count"] == 0, row[path]["errors"]
        assert row[path]["requests_finished"] > 0  # 16-token requests: many in 2 s
        assert set(row[path]["finish_reasons"]) <= {"length", "stop"}
    assert (out / "gateway.log").is_file()
