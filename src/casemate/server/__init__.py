"""The assistant's HTTP face: an OpenAI-compatible API, a search API and an offline chat page."""
