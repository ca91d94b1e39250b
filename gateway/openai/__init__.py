"""OpenAI's wire format: request models, streamed chunks, non-streamed bodies, logprobs."""
