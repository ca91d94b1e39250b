"""deploy/grafana/dashboard.json against what a live gateway really exports: every metric
and label its queries name exists, and it charts what an operator watches."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboard.json"
MODEL = "SmolLM2-135M-Instruct"
# Admits one request at a time: a second at once is rejected, so every counter has a sample.
ONE_AT_A_TIME = Settings(
    engine="synthetic",
    synthetic=SyntheticSettings(token_seconds=0.01, max_seq_len=512),
    max_concurrent_requests=1,
)


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def queries() -> list[str]:
    return [t["expr"] for p in load()["panels"] for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def exported() -> Iterator[dict[str, set[str]]]:
    """Every sample name the gateway exports after some traffic, with its label names."""
    server: LiveServer
    for server in serve(ONE_AT_A_TIME):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
        threads = [
            threading.Thread(target=httpx.post, args=(f"{server.url}/v1/chat/completions",),
                             kwargs={"json": body, "timeout": 30})
            for _ in range(2)
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        samples: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text):
            for sample in family.samples:
                samples.setdefault(sample.name, set()).update(sample.labels)
        assert "gateway_admission_rejections_total" in samples, "no request was rejected"
        yield samples


@pytest.mark.parametrize("query", queries())
def test_each_query_names_exported_metrics_and_labels(
    query: str, exported: dict[str, set[str]]
) -> None:
    metrics = set(re.findall(r"\bgateway_\w+", query))
    assert metrics and metrics <= exported.keys(), metrics - exported.keys()
    labels = set(re.findall(r"(\w+)=~?\"", query)) | {
        label.strip()
        for group in re.findall(r"by \(([^)]*)\)", query)
        for label in group.split(",")
    }
    have = set.union(*(exported[metric] for metric in metrics))
    assert labels <= have, f"{query}: {labels - have}"


def test_it_charts_what_an_operator_watches() -> None:
    used = {metric for query in queries() for metric in re.findall(r"\bgateway_\w+", query)}
    assert used == {
        "gateway_generation_tokens_total",
        "gateway_prompt_tokens_total",
        "gateway_num_requests_running",
        "gateway_num_requests_waiting",
        "gateway_request_success_total",
        "gateway_http_requests_total",
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_inter_token_latency_seconds_bucket",
        "gateway_e2e_request_latency_seconds_bucket",
        "gateway_request_queue_time_seconds_bucket",
        "gateway_kv_cache_usage_perc",
        "gateway_prefix_cache_hits_total",
        "gateway_prefix_cache_queries_total",
        "gateway_admission_rejections_total",
        "gateway_event_loop_lag_seconds",
        "gateway_engine_step_seconds",
    }


def test_its_panels_are_laid_out_on_the_grid_and_use_the_chosen_source() -> None:
    dashboard = load()
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in panels
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(set(cells)) == len(cells), "panels overlap"
    assert all(x < 24 for x, _ in cells)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "model_name"}
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert sum(1 for p in panels if p["type"] == "timeseries") == 12
