"""The app's start-up, run as uvicorn runs its lifespan."""

from __future__ import annotations

import gc

from engines.settings import SyntheticSettings
from gateway.http.app import create_app
from gateway.settings import Settings


async def test_start_up_puts_what_it_built_out_of_the_collectors_sight() -> None:
    """A full collection must not scan the start-up's objects (over 100 ms of stopped loop)."""
    app = create_app(Settings(engine="synthetic", synthetic=SyntheticSettings(token_seconds=0)))
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            services = app.state.services
            assert gc.get_freeze_count() > 10_000  # modules, tokenizer, engine
            assert all(services is not o for o in gc.get_objects())  # frozen: never scanned
    finally:
        gc.unfreeze()
