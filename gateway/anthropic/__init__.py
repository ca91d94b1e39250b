"""Anthropic's Messages API, served by translating each request onto a chat completion."""
