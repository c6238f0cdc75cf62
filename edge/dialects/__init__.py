"""Client-facing wire dialects: OpenAI Chat Completions and Anthropic Messages."""
