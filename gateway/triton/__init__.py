"""Triton's generate API, as tensorrtllm_backend's `ensemble` model answers it."""
