"""Client libraries that would reach the internet at import time, kept offline."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def litellm() -> Iterator[ModuleType]:
    """litellm, imported with its bundled model cost map.

    Otherwise `import litellm` fetches the cost map from GitHub (and, offline, waits
    for the fetch to fail before falling back to the bundled copy). The variable is
    read once, at import, so litellm must not have been imported before this.
    litellm's import also points TIKTOKEN_CACHE_DIR at its bundled tiktoken files;
    that is undone, with the cost map switch, when the session ends.
    """
    assert "litellm" not in sys.modules, "litellm was imported before its offline switch"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        patch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
        module = importlib.import_module("litellm")
        cost_map = importlib.import_module("litellm.litellm_core_utils.get_model_cost_map")
        source = cost_map.get_model_cost_map_source_info()
        assert (source["source"], source["is_env_forced"]) == ("local", True)
        yield module
