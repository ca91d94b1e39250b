"""Inference engines behind one small contract (`engines.base`)."""

from __future__ import annotations

from pathlib import Path

from engines.base import Engine
from engines.settings import SyntheticSettings, TransformersSettings, TrtllmSettings

EngineSettings = TransformersSettings | SyntheticSettings | TrtllmSettings


def create_engine(model_dir: Path, settings: EngineSettings) -> Engine:
    """The engine that `settings` configures; heavy imports happen only for that one."""
    match settings:
        case SyntheticSettings(worker=True) | TransformersSettings(worker=True):
            from engines.worker import WorkerEngine

            return WorkerEngine(model_dir, settings)
        case SyntheticSettings():
            from engines.synthetic import SyntheticEngine

            return SyntheticEngine(settings)
        case TransformersSettings():
            from engines.transformers import TransformersEngine

            return TransformersEngine(model_dir, settings)
        case TrtllmSettings():
            from engines.trtllm import TrtllmEngine

            return TrtllmEngine(model_dir, settings)
