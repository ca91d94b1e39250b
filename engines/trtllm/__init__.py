"""The TensorRT-LLM engine (`engine.py`).

`sampling.py` maps the contract's sampling onto the library's, and `compat.py`
tells the installed release apart.
"""

from engines.trtllm.engine import TrtllmEngine

__all__ = ["TrtllmEngine"]
