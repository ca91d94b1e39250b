"""Text processing: token ids to what a client may see, one pure stage at a time.

Detokenizing, stop strings, the reasoning split and tool-call parsing, and the
per-choice `ChoiceStream` that chains them. Nothing here knows of the event loop,
HTTP or metrics (an import contract in `make lint` keeps it so): every stage is
tested by pushing text in and reading what comes out.
"""
