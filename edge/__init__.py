"""llm-edge: an LLM routing gateway for OpenAI and Anthropic traffic."""

__version__ = "0.1.0"
