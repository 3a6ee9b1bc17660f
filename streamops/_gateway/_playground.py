"""The ``/playground`` page (``--playground``, off by default): try a policy in a browser.

Plain HTML and ``fetch`` streaming, no build step. The page posts a prompt and
a policy name to ``/playground/stream``; the gateway takes the API routes'
steps (:meth:`~._app.Gateway._admit`: with ``--keys`` the page's key
authenticates and its rate limit and daily budget apply; the picked policy's
input rules redact or block the prompt), sends it to the ``--upstream`` URLs
(chat completions, with their fallbacks) through that policy, logs and counts
the request as route ``playground``, and streams back SSE events: ``delta`` (the
released text), ``stats`` (tokens and cost so far, characters held back by the
policy) and ``report`` (the stop reason, redactions, usage) at the end.
"""

from __future__ import annotations

import functools
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
    from ._wires import WIRES, read_json

    gateway.config = with_policies(gateway.config, so.preset_names())
    wire = WIRES[0]

    async def page(request: Any) -> Any:
        return HTMLResponse(_page())

    async def policies(request: Any) -> Any:
        names = sorted(gateway.config.policies)
        return JSONResponse({"policies": names, "default": gateway.config.policy})

    async def stream(request: Any) -> Any:
        from ._app import _EventStream, _Request

        ctx = _Request("playground")
        try:
            response = await start(request, ctx)
        except BaseException:
            gateway._finish(ctx)
            raise
        if not isinstance(response, _EventStream):
            gateway._finish(ctx)
        return response

    async def start(request: Any, ctx: Any) -> Any:
        from ._app import _Admission, _EventStream

        try:
            body = read_json(await request.body())
            prompt = body["prompt"]
            name = body.get("policy") or gateway.config.policy
            model = body.get("model") or "gpt-4o-mini"
        except (ValueError, KeyError, TypeError, AttributeError):
            return gateway._error(ctx, wire, 400, "expected {prompt, policy}", "invalid_request")
        if not isinstance(prompt, str) or not isinstance(model, str):
            return gateway._error(ctx, wire, 400, "expected {prompt, policy}", "invalid_request")
        if not isinstance(name, str) or name not in gateway.config.policies:
            return gateway._error(ctx, wire, 400, f"unknown policy {name!r}", "invalid_request")
        ctx.model, ctx.stream = model, True
        payload = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # The API routes' steps: key, rate limit, daily budget, the picked policy's input rules.
        admitted = await gateway._admit(wire, request, payload, ctx, name)
        if not isinstance(admitted, _Admission):
            return admitted  # the refusal: 401, 429, 503, or 400 (input blocked)
        seen = [0]

        async def tapped(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
            async for item in events:
                for choice in item.get("choices") or ():
                    seen[0] += len((choice.get("delta") or {}).get("content") or "")
                yield item

        out = gateway._source(wire, request, payload, ctx, admitted, tap=tapped)
        gateway.metrics.child(gateway.metrics.active, ctx.route).inc()
        ctx.extra["active"] = True
        ctx.status = 200

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
                ctx.error = code
                yield _event("error", {"status": status, "code": code, "message": message})
            finally:
                await out.aclose()
                await gateway._charge_prompt(wire, payload, ctx)  # a cost key pays the prompt
                ctx.report = out.report
                gateway._finish(ctx)
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

        return _EventStream(
            events(),
            send_timeout=gateway.config.slow_client_timeout,
            on_slow=functools.partial(gateway._slow, ctx),
        )

    return [
        Route("/playground", page, methods=["GET"]),
        Route("/playground/policies", policies, methods=["GET"]),
        Route("/playground/stream", stream, methods=["POST"]),
    ]
