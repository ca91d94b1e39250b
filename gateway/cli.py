"""`trtllm-gateway serve`: settings from flags, environment and YAML, then uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from gateway.app import create_app
from gateway.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trtllm-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the OpenAI API")
    serve.add_argument("--engine", choices=["transformers", "synthetic", "trtllm"])
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--config", type=Path, help="a YAML settings file (or GATEWAY_CONFIG)")
    args = parser.parse_args(argv)

    settings = Settings.load(args.config, engine=args.engine, host=args.host, port=args.port)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
