"""The HTTP layer: the app, its middleware and routes, and the responses that own a
running request. The only layer that imports starlette, FastAPI or uvicorn."""
