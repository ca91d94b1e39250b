"""The synthetic engine: weightless, with real batch semantics (`engine.py`)."""

from engines.synthetic.engine import SyntheticEngine

__all__ = ["SyntheticEngine"]
