"""The ``streamops`` command line: demo, run, check-policy, fake-server, bench.

Exit codes (``streamops run`` and ``streamops demo``) say how the stream stopped:

==== =====================================================================
0    complete: the input ended and every operator flushed
1    error: the stream failed (invalid JSON, a broken upstream, ...)
2    usage: bad arguments, an unreadable or invalid policy file
3    budget: a token or cost budget ran out
4    timeout: a first-chunk, idle or total limit fired
5    blocked: a redaction pattern with ``action = "block"`` matched
130  interrupted (Ctrl-C)
==== =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import importlib
import json
import os
import shutil
import stat
import sys
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from ._budget._processor import BudgetExceededError, BudgetUsage
from ._collect import Collected
from ._core._driver import Operator
from ._core._errors import StreamOpsError
from ._core._report import StopReason, StreamReport
from ._policy._policy import Policy, PolicyError, load_policy
from ._providers._lenses import find_lens
from ._providers._sse import sse_json
from ._redact._filter import RedactReport
from ._timeout import StreamTimeout
from .testing._fake import FakeStreamingModel

__all__: list[str] = []

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUDGET, EXIT_TIMEOUT, EXIT_BLOCKED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
_EXIT_BY_REASON = {
    StopReason.COMPLETE: EXIT_OK,
    StopReason.CLOSED: EXIT_OK,
    StopReason.TRUNCATED: EXIT_OK,  # the provider's own cut: the answer is what it sent
    StopReason.BUDGET: EXIT_BUDGET,
    StopReason.TIMEOUT: EXIT_TIMEOUT,
    StopReason.BLOCKED: EXIT_BLOCKED,
    StopReason.CANCELLED: EXIT_INTERRUPTED,
    StopReason.ERROR: EXIT_ERROR,
}

DEMO_PROMPT = "How do I call the inventory API from Python?"
DEMO_ANSWER = """\
Sure! Here is how to call the inventory API from Python.

1. Export your key first. For example, the key in your message, \
sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c, goes into INVENTORY_API_KEY \
(never paste it into code).
2. Send a GET request to /v1/items with the header "Authorization: Bearer $INVENTORY_API_KEY".
3. If anything fails, write to the owner of the service, maria.lopez@example.com.

A successful response looks like this:

```json
{"status": "ok", "owner": "maria.lopez@example.com", "items": [{"sku": "A-1001", "qty": 3}, \
{"sku": "B-2002", "qty": 0}]}
```

Retry on HTTP 429 with a short backoff, and rotate the key if you ever see 401.
"""


class _Usage(Exception):
    """A usage error: one line on stderr, exit code 2."""


class _Failed(Exception):
    """A command that could not do its job: one line on stderr, exit code 1."""


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------


def _load(spec: str) -> tuple[Policy, Operator[Any, Any]]:
    """Load and build a policy: any problem with it is a usage error, before any I/O."""
    try:
        policy = load_policy(spec)
    except PolicyError as exc:
        raise _Usage(str(exc)) from None
    try:
        return policy, policy.build()
    except PolicyError as exc:  # build() does not know the file: name it, as loading does
        raise _Usage(str(PolicyError(spec, exc.errors))) from None


def _exit_code(report: StreamReport, error: BaseException | None) -> int:
    if isinstance(error, StreamTimeout):
        return EXIT_TIMEOUT
    if isinstance(error, BudgetExceededError):
        return EXIT_BUDGET
    if error is not None:
        return EXIT_ERROR
    return _EXIT_BY_REASON.get(report.stop_reason or StopReason.COMPLETE, EXIT_ERROR)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sections(report: StreamReport) -> tuple[BudgetUsage | None, RedactReport | None, Any]:
    budget = report.sections.get("budget")
    redact = report.sections.get("redact")
    collected = next((s for s in report.sections.values() if isinstance(s, Collected)), None)
    return (
        budget if isinstance(budget, BudgetUsage) else None,
        redact if isinstance(redact, RedactReport) else None,
        collected,
    )


def _value_json(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False)


def _report_dict(
    policy: Policy, report: StreamReport, error: BaseException | None, code: int, text: str
) -> dict[str, Any]:
    budget, redact, collected = _sections(report)
    return {
        "policy": policy.name,
        "stop_reason": None if report.stop_reason is None else str(report.stop_reason),
        "stop_detail": report.stop_detail,
        "exit_code": code,
        "error": None if error is None else _one_line(error),
        "text": text,
        "usage": None if budget is None else budget.model_dump(mode="json"),
        "redactions": None
        if redact is None
        else {
            "redacted": redact.redacted,
            "flagged": redact.flagged,
            "blocked_by": redact.blocked_by,
        },
        "metrics": None if collected is None else collected.metrics.model_dump(mode="json"),
        "chunks_in": report.chunks_in,
        "chunks_out": report.chunks_out,
    }


# --------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------


class _Live:
    """Text streaming on a terminal with a status line kept below it.

    The status line is redrawn under the current (incomplete) text line: the
    text is wrapped here at the terminal width so that "one line up" is
    always the text line being written.
    """

    def __init__(self, out: TextIO, status: Callable[[], str]) -> None:
        self.out = out
        self.status = status
        self.width = max(20, shutil.get_terminal_size().columns)
        self.tail = ""
        out.write("\n" + self._status())
        out.flush()

    def _status(self) -> str:
        return "\x1b[2m" + self.status()[: self.width - 1] + "\x1b[0m"

    def write(self, text: str) -> None:
        done, self.tail = _wrap(self.tail + text, self.width - 1)
        self.out.write("\r\x1b[K\x1b[1A\r\x1b[K" + done + self.tail + "\n" + self._status())
        self.out.flush()

    def tick(self) -> None:
        self.out.write("\r\x1b[K" + self._status())
        self.out.flush()

    def close(self) -> None:
        self.out.write("\r\x1b[K\x1b[1A\r\x1b[K" + self.tail + "\n")
        self.out.flush()


def _wrap(text: str, width: int) -> tuple[str, str]:
    """Split ``text`` into finished lines (with their newlines) and the open last line."""
    lines = text.split("\n")
    tail = lines.pop()
    done = "".join(line + "\n" for line in lines)
    while len(tail) > width:
        cut = tail.rfind(" ", 0, width + 1)
        if cut <= 0:
            done, tail = done + tail[:width] + "\n", tail[width:]
        else:
            done, tail = done + tail[:cut] + "\n", tail[cut + 1 :]
    return done, tail


def _status_line(report: StreamReport, started: float) -> str:
    budget, redact, _ = _sections(report)
    tokens = "-" if budget is None else str(budget.tokens_so_far())
    live_cost = None if budget is None else budget.cost_so_far()
    cost = "-" if live_cost is None else f"${live_cost:.6f}"
    redactions = 0 if redact is None else sum(redact.redacted.values())
    elapsed = time.monotonic() - started
    return f"tokens {tokens} | cost {cost} | redactions {redactions} | {elapsed:.1f}s"


def _summary(report: StreamReport, error: BaseException | None, elapsed: float) -> str:
    budget, redact, collected = _sections(report)
    reason = "running" if report.stop_reason is None else str(report.stop_reason)
    rows = [("stop reason", reason + (f" ({report.stop_detail})" if report.stop_detail else ""))]
    if error is not None:
        rows.append(("error", _one_line(error)))
    if budget is not None:
        limit = "" if budget.limit is None else f" of {budget.limit}"
        rows.append(("tokens", f"{budget.completion_tokens}{limit} ({budget.encoding})"))
        if budget.cost is not None:
            cap = "" if budget.max_cost is None else f", cap ${budget.max_cost:g}"
            rows.append(("cost", f"${budget.cost:.6f} ({budget.model}{cap})"))
    if redact is not None:
        found = ", ".join(f"{k} x{v}" for k, v in redact.redacted.items()) or "none"
        rows.append(("redactions", found))
        if redact.flagged:
            rows.append(("flagged", ", ".join(f"{k} x{v}" for k, v in redact.flagged.items())))
        if redact.blocked_by:
            rows.append(("blocked by", redact.blocked_by))
    rows.append(("chunks out", str(report.chunks_out)))
    if collected is not None and collected.metrics.time_to_first_chunk is not None:
        rows.append(("first chunk", f"{collected.metrics.time_to_first_chunk * 1000:.0f} ms"))
    rows.append(("elapsed", f"{elapsed:.2f} s"))
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([rule, *(f"{k:<{width}}  {v}" for k, v in rows), rule])


async def _demo_async(args: argparse.Namespace) -> int:
    policy, op = _load(args.policy)
    delay = 0.0 if args.fast else args.delay
    model = FakeStreamingModel(DEMO_ANSWER, chunking="token", delay=delay, first_chunk_delay=delay)
    if policy.retry is not None:
        stream = policy.wrap(lambda: model.astream(DEMO_PROMPT), pipeline=op)
    else:
        stream = op(model.astream(DEMO_PROMPT), on_event=policy.on_event())
    report: StreamReport = stream.report
    out = sys.stdout
    started = time.monotonic()
    live = None
    if out.isatty() and not args.json:
        live = _Live(out, lambda: _status_line(report, started))
    error: BaseException | None = None
    values: list[Any] = []
    ticker = asyncio.create_task(_tick(live)) if live is not None else None
    try:
        async with stream:
            async for piece in stream:
                if not isinstance(piece, str):
                    values[:] = [piece]
                elif live is not None:
                    live.write(piece)
                elif not args.json:
                    out.write(piece)
                    out.flush()
    except StreamOpsError as exc:
        error = exc
    finally:
        if ticker is not None:
            ticker.cancel()
        if live is not None:
            live.close()
    elapsed = time.monotonic() - started
    code = _exit_code(report, error)
    if args.json:
        data = _report_dict(policy, report, error, code, report.released_text)
        if values:
            data["value"] = json.loads(_value_json(values[-1]))
        out.write(json.dumps(data, indent=2) + "\n")
        return code
    if values:
        out.write(_value_json(values[-1]) + "\n")
    out.write("\n" + _summary(report, error, elapsed) + "\n")
    return code


async def _tick(live: _Live | None) -> None:
    while live is not None:
        await asyncio.sleep(0.1)
        live.tick()


def _demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo_async(args))


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------


async def _read_fd(fd: int) -> AsyncGenerator[bytes, None]:
    """Yield bytes from ``fd`` as they arrive, without blocking the event loop.

    Pipes, terminals and sockets are read through the event loop (so timeouts
    can interrupt a wait); regular files never block and are read directly.
    """
    if stat.S_ISREG(os.fstat(fd).st_mode):
        while data := os.read(fd, 65536):
            yield data
            await asyncio.sleep(0)
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while data := await reader.read(65536):
            yield data
    finally:
        transport.close()
        os.set_blocking(fd, True)  # the fd may be the shell's terminal: leave it as found


async def _decode(chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[str]:
    """Decode UTF-8 incrementally: a character split between reads stays whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        async for data in chunks:
            if text := decoder.decode(data):
                yield text
        if text := decoder.decode(b"", final=True):
            yield text
    finally:
        await chunks.aclose()


async def _sse_text(data: AsyncGenerator[bytes, None]) -> AsyncIterator[str]:
    """Decode SSE into provider chunks, and those into their text (through their lens).

    The policy then runs on plain text, whatever its output is (text or JSON values).
    """
    async with aclosing(sse_json()(data)) as chunks:
        lens = None
        async for chunk in chunks:
            if lens is None:
                lens = find_lens(chunk)
            if text := lens.unwrap(chunk):
                yield text


async def _run_async(args: argparse.Namespace) -> int:
    policy, op = _load(args.policy)
    if policy.retry is not None:
        sys.stderr.write(
            "streamops: note: the retry section is ignored: stdin cannot be replayed\n"
        )
    if args.input in (None, "-"):
        fd, owned = sys.stdin.fileno(), False
    else:
        try:
            fd, owned = os.open(args.input, os.O_RDONLY), True
        except OSError as exc:
            raise _Usage(f"cannot open --input {args.input}: {exc.strerror}") from None
    source = _sse_text(_read_fd(fd)) if args.sse else _decode(_read_fd(fd))
    stream = op(source, on_event=policy.on_event())
    out = sys.stdout.buffer
    multiple = policy.parse_json is not None and policy.parse_json.multiple
    last: list[Any] = []
    error: BaseException | None = None
    try:
        async with stream:
            async for piece in stream:
                if isinstance(piece, str):
                    out.write(piece.encode())
                elif multiple:
                    out.write((_value_json(piece) + "\n").encode())
                else:
                    last[:] = [piece]
                out.flush()
    except StreamOpsError as exc:
        error = exc
    finally:
        if owned:
            os.close(fd)
    if last and error is None:
        out.write((_value_json(last[0]) + "\n").encode())
        out.flush()
    report: StreamReport = stream.report
    code = _exit_code(report, error)
    if args.report:
        data = _report_dict(policy, report, error, code, report.released_text)
        sys.stderr.write(json.dumps(data) + "\n")
    if error is not None:
        sys.stderr.write(f"streamops: error: {_one_line(error)}\n")
    elif code != EXIT_OK:
        detail = f" ({report.stop_detail})" if report.stop_detail else ""
        sys.stderr.write(f"streamops: stopped: {report.stop_reason}{detail}\n")
    return code


def _run(args: argparse.Namespace) -> int:
    return asyncio.run(_run_async(args))


# --------------------------------------------------------------------------
# check-policy, fake-server, bench
# --------------------------------------------------------------------------


def _check_policy(args: argparse.Namespace) -> int:
    policy, _ = _load(args.file)
    if args.json:
        sys.stdout.write(json.dumps(policy.to_dict(), indent=2) + "\n")
        return EXIT_OK
    title = policy.name or args.file
    sys.stdout.write(f"{title}: valid\n")
    if policy.description:
        sys.stdout.write(f"  {policy.description}\n")
    sys.stdout.write(policy.describe() + "\n")
    return EXIT_OK


def _fake_server(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        server = importlib.import_module("streamops.testing._server")
    except ImportError as exc:
        if exc.name not in ("streamops.testing._server", "starlette", "uvicorn"):
            raise
        raise _Usage(
            "fake-server needs the server extra: pip install 'streamops[server]'"
            if exc.name != "streamops.testing._server"
            else "fake-server is not available in this version of streamops"
        ) from None
    parser = argparse.ArgumentParser(
        prog="streamops fake-server",
        description="Serve the fake streaming model as an OpenAI-compatible HTTP API.",
    )
    server.add_fake_server_arguments(parser)
    try:
        fake = server.fake_server_from_args(parser.parse_args(extra))
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    try:
        server.serve_fake_server(fake)
    except OSError as exc:  # the port is taken, say: an error, not a usage problem
        raise _Failed(str(exc)) from None
    return EXIT_OK


def _find_benchmarks() -> Path | None:
    here = Path(__file__).resolve().parent.parent
    for root in (Path.cwd(), here):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    return None


def _bench(args: argparse.Namespace, extra: list[str]) -> int:
    root = _find_benchmarks()
    if root is None:
        raise _Usage(
            "benchmarks run from a source checkout: no benchmarks/ folder in the current"
            " directory or beside the streamops package"
        )
    sys.path.insert(0, str(root))
    module = importlib.import_module("benchmarks.__main__")
    result: int | None = module.main(extra)
    return result or EXIT_OK


# --------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = argparse.ArgumentParser(
        prog="streamops",
        description="Enforce safety and cost policies on LLM output streams while they stream.",
        epilog="Exit codes: 0 complete, 1 error, 2 usage or bad policy, 3 budget, 4 timeout,"
        " 5 blocked, 130 interrupted.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="stream a fake model's answer through the safe-chat policy",
        description="Stream a built-in fake model's answer (with an API key, an email and a"
        " JSON block) through a policy, live, then print a summary.",
    )
    demo.add_argument(
        "--policy", default="safe-chat", help="policy file or preset name (default: safe-chat)"
    )
    demo.add_argument(
        "--delay", type=float, default=0.02, help="seconds between chunks (default: 0.02)"
    )
    demo.add_argument("--fast", action="store_true", help="no delay between chunks")
    demo.add_argument("--json", action="store_true", help="print a machine-readable report only")
    demo.set_defaults(func=_demo)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="apply a policy to a stream on stdin, writing to stdout as it goes",
        description="Apply a policy to text (or SSE) arriving on stdin as it arrives, writing"
        " to stdout as it goes. The exit code says how the stream stopped.",
        epilog="Exit codes: 0 complete, 1 error, 2 usage or bad policy, 3 budget, 4 timeout,"
        " 5 blocked.",
    )
    run.add_argument("--policy", required=True, help="policy file or preset name")
    run.add_argument("--input", metavar="FILE", help="read from FILE instead of stdin ('-')")
    run.add_argument(
        "--sse",
        action="store_true",
        help="the input is server-sent events (OpenAI-compatible JSON chunks, ends at [DONE])",
    )
    run.add_argument(
        "--report", action="store_true", help="write a JSON report line to stderr at the end"
    )
    run.set_defaults(func=_run)

    check = sub.add_parser(
        "check-policy",
        parents=[common],
        help="validate a policy and print the resolved pipeline",
        description="Validate a policy file (or preset) and print the pipeline it builds.",
    )
    check.add_argument("file", help="policy file (.toml, .json, .yaml) or preset name")
    check.add_argument("--json", action="store_true", help="print the policy as JSON")
    check.set_defaults(func=_check_policy)

    server = sub.add_parser(
        "fake-server",
        help="serve the fake model as an OpenAI-compatible HTTP API (options: fake-server --help)",
        add_help=False,
    )
    server.set_defaults(passthrough=_fake_server)
    bench = sub.add_parser(
        "bench",
        help="run the benchmarks and print the ratio table (from a source checkout)",
        add_help=False,
    )
    bench.set_defaults(passthrough=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamops`` command line; return the process exit code.

    >>> main(["check-policy", "cost-capped"])  # doctest: +ELLIPSIS
    cost-capped: valid
    ...
    0
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    passthrough = getattr(args, "passthrough", None)
    debug = getattr(args, "debug", False)  # SUPPRESS: set only when given, at any level
    if extra and passthrough is None:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if passthrough is not None:
            code: int = passthrough(args, extra)
        else:
            code = args.func(args)
        return code
    except KeyboardInterrupt:
        sys.stderr.write("streamops: interrupted\n")
        return EXIT_INTERRUPTED
    except (_Usage, _Failed) as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"streamops: error: {exc}\n")
        return EXIT_USAGE if isinstance(exc, _Usage) else EXIT_ERROR
    except Exception as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"streamops: error: {_one_line(exc)}\n")
        return EXIT_ERROR
