from __future__ import annotations
from collections.abc import Iterator
import pytest
import schemathesis
from schemathesis import GenerationMode
from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "SmolLM2-135M-Instruct"

@pytest.fixture(scope="module")
def fuzzed_gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", api_keys=[KEY], synthetic=SyntheticSettings(token_seconds=0, max_seq_len=256)))

@pytest.fixture(scope="module")
def api_schema(fuzzed_gateway: LiveServer):
    schema = schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json", headers=AUTH)
    schema.config.generation.update(max_examples=50, deterministic=True)
    print(schema.config, schema.base_url if hasattr(schema, "base_url") else None)
    return schema

schema = schemathesis.pytest.from_fixture("api_schema")
seen = {}

@schema.parametrize()
def test_fuzz(case):
    if case.meta.generation.mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
        case.body["model"] = MODEL
    r = case.call_and_validate(headers=AUTH)
    key = (case.method, case.path, case.meta.generation.mode.value, r.status_code)
    seen[key] = seen.get(key, 0) + 1

def test_zz_report():
    for k, v in sorted(seen.items(), key=str): print(k, v)
