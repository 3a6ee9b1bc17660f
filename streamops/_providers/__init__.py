"""Every piece of provider knowledge lives here (private; lenses re-exported by ``streamops``).

- ``_lenses``: lenses for OpenAI (chat, responses), Anthropic, LangChain, bytes;
- ``_gemini``, ``_litellm``: lenses for google-genai and LiteLLM chunks;
- ``_usage``: provider-reported token usage, read from any of them;
- ``_sse``: server-sent events, decode and encode; ``_websocket``: WebSocket I/O;
- ``_wire``: error bodies of each wire by HTTP status;
- ``_aiostream``: ``xs | op`` on aiostream streams; ``_langchain_events``:
  advice for a LangChain event stream passed where chunks were expected.
"""
