"""The ``/playground`` page (``--playground``, off by default): try a policy in a browser.

Plain HTML and ``fetch`` streaming, no build step. The page posts a prompt and
a policy name to ``/playground/stream``; the gateway sends it to the first
``--upstream`` (chat completions) through that policy, exactly as the API
routes do (with ``--keys`` the page's key authenticates, and the key's daily
budget and rate limit apply), and streams back SSE events: ``delta`` (the
released text), ``stats`` (tokens and cost so far, characters held back by the
policy) and ``report`` (the stop reason, redactions, usage) at the end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import streamops as so

__all__ = ["routes"]


def _page() -> str:
    return resources.files(__package__).joinpath("playground.html").read_text(encoding="utf-8")


_LABEL = re.compile(r"\[[A-Z][A-Z0-9_]*\]|\[REDACTED\]|<redacted>")


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return so.sse_format(json.dumps(data, separators=(",", ":")), event=kind).encode()


def routes(gateway: Any) -> list[Any]:
    """The playground's routes on ``gateway`` (a :class:`~._app.Gateway`)."""
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from ._config import with_policies
    from ._wires import WIRES

    gateway.config = with_policies(gateway.config, so.preset_names())
    wire = WIRES[0]

    async def page(request: Any) -> Any:
        return HTMLResponse(_page())

    async def policies(request: Any) -> Any:
        names = sorted(gateway.config.policies)
        return JSONResponse({"policies": names, "default": gateway.config.policy})

    async def stream(request: Any) -> Any:
        try:
            body = json.loads(await request.body())
            prompt = body["prompt"]
            name = body.get("policy") or gateway.config.policy
            model = body.get("model") or "gpt-4o-mini"
        except (ValueError, KeyError, TypeError):
            error = wire.error_body(400, "expected {prompt, policy}", "invalid_request")
            return JSONResponse(error, 400)
        if not isinstance(prompt, str) or name not in gateway.config.policies:
            error = wire.error_body(400, f"unknown policy {name!r}", "invalid_request")
            return JSONResponse(error, 400)
        key = None
        if gateway.config.keys is not None:
            key = gateway._authenticate(wire, request)
            if key is None:
                return JSONResponse(wire.error_body(401, "invalid API key", "invalid_api_key"), 401)
            allowed, _ = await gateway.state.allow_request(key)
            if not allowed:
                return JSONResponse(
                    wire.error_body(429, "rate limited", "rate_limit_exceeded"), 429
                )
        payload = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = gateway._upstream_headers(wire, request)
        url = gateway.config.upstreams[0] + "/chat/completions"
        from ._app import _Request

        ctx = _Request("playground")
        seen = [0]

        async def tapped() -> AsyncIterator[dict[str, Any]]:
            async for item in gateway._read_upstream(url, wire, payload, headers, ctx):
                for choice in item.get("choices") or ():
                    seen[0] += len((choice.get("delta") or {}).get("content") or "")
                yield item

        out = gateway.pipeline(name, key)(tapped())

        async def events() -> AsyncIterator[bytes]:
            delivered = 0
            offset = 0  # source characters a released redaction stood for, beyond its label
            started = time.monotonic()
            try:
                async for item in out:
                    for choice in item.get("choices") or ():
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            delivered += len(piece)
                            if _LABEL.search(piece):
                                # A label replaced a secret of unknown length: take the text
                                # received so far as accounted for (an estimate, not exact).
                                offset = seen[0] - delivered
                            yield _event("delta", {"text": piece})
                    usage = out.report.sections.get("budget")
                    yield _event(
                        "stats",
                        {
                            "tokens": usage.tokens_so_far() if usage is not None else None,
                            "cost": usage.cost_so_far() if usage is not None else None,
                            "held": max(0, seen[0] - delivered - offset),
                        },
                    )
            except Exception as exc:
                status, code, message = gateway.map_error(exc)
                yield _event("error", {"status": status, "code": code, "message": message})
            finally:
                await out.aclose()
            report = out.report
            redact = report.sections.get("redact")
            usage = report.sections.get("budget")
            yield _event(
                "report",
                {
                    "policy": name,
                    "stop_reason": str(report.stop_reason),
                    "redacted": dict(redact.redacted) if redact is not None else {},
                    "tokens": usage.completion_tokens if usage is not None else None,
                    "cost": usage.cost if usage is not None else None,
                    "limit": usage.limit if usage is not None else None,
                    "chunks_in": report.chunks_in,
                    "chunks_out": report.chunks_out,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

        from ._app import _EventStream

        return _EventStream(
            events(), send_timeout=gateway.config.slow_client_timeout, on_slow=lambda: None
        )

    return [
        Route("/playground", page, methods=["GET"]),
        Route("/playground/policies", policies, methods=["GET"]),
        Route("/playground/stream", stream, methods=["POST"]),
    ]
