"""transformers' continuous batching, the embedded default engine.

`engine.py` holds the engine; `manager.py` configures transformers' manager,
`sampler.py` (with `token_draw.py`) is our own per-request sampler, and
`prefix.py` keeps the prefix-cache figures.

Imports inside this package are absolute: `import transformers` here is still
Hugging Face's library, and this package is always `engines.transformers`.
"""

from engines.transformers.engine import TransformersEngine

__all__ = ["TransformersEngine"]
