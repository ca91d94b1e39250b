"""Serving a completion: checks, prompts, admission, the running request and its
choices, deadlines and metrics. Nothing here speaks HTTP."""
