"""The ``streamops`` command line: demo, run, check-policy, serve, fake-server.

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
import json
import os
import shutil
import stat
import sys
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any, TextIO

from pydantic import BaseModel

from ._budget._processor import BudgetExceededError, BudgetUsage
from ._collect import Collected
from ._core._driver import Operator
from ._core._errors import MissingExtraError, StreamOpsError
from ._core._extras import require
from ._core._report import StopReason, StreamReport
from ._core._validate import did_you_mean
from ._policy._policy import Policy, PolicyError, load_policy
from ._providers._lenses import find_lens
from ._providers._sse import sse_json
from ._redact._filter import RedactReport
from ._timeout import StreamTimeout
from .testing._fake import FakeStreamingModel
from .testing._server import FakeOpenAIServer, serve_fake_server

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


# --------------------------------------------------------------------------
# fake-server: the fake model over HTTP (its options; the server is streamops.testing)
# --------------------------------------------------------------------------

_DEFAULT_REPLY = "Hello! I am a fake model. Point your OpenAI client at me to test your app."


def _http_error(spec: str) -> tuple[int, int]:
    number, sep, status = spec.partition(":")
    if not sep or not number.isdigit() or not status.isdigit():
        raise argparse.ArgumentTypeError(f"expected REQUEST:STATUS such as 1:500, got {spec!r}")
    return int(number), int(status)


def add_fake_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fake-server`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--reply",
        action="append",
        dest="replies",
        metavar="TEXT",
        help="a scripted reply (repeat for successive calls; they cycle)",
    )
    parser.add_argument("--chunking", default="word", help="word, char, token, random or a size")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between chunks")
    parser.add_argument("--first-chunk-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed for random chunking")
    parser.add_argument("--model-name", default="fake-model", help="model name in the chunks")
    parser.add_argument(
        "--http-error",
        action="append",
        type=_http_error,
        default=[],
        metavar="REQUEST:STATUS",
        help="answer request number REQUEST with HTTP STATUS, e.g. 1:500 (repeatable)",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")


def fake_server_from_args(args: argparse.Namespace) -> FakeOpenAIServer:
    """Build the server of ``streamops fake-server`` from parsed ``args``.

    Bad values raise ``ValueError`` here, before anything is served.

    >>> parser = argparse.ArgumentParser()
    >>> add_fake_server_arguments(parser)
    >>> fake_server_from_args(parser.parse_args(["--host", "10.0.0.1"]))
    Traceback (most recent call last):
    ...
    ValueError: host '10.0.0.1' is not a loopback address; ...
    """
    chunking: str | int = int(args.chunking) if args.chunking.isdigit() else args.chunking
    model = FakeStreamingModel(
        args.replies or [_DEFAULT_REPLY],
        chunking=chunking,
        delay=args.delay,
        first_chunk_delay=args.first_chunk_delay,
        seed=args.seed,
        model_name=args.model_name,
        format="openai-dict",
    )
    return FakeOpenAIServer(
        model,
        host=args.host,
        port=args.port,
        http_errors=dict(args.http_error),
        allow_remote=args.allow_remote,
    )


def _fake_server(args: argparse.Namespace) -> int:
    try:
        fake = fake_server_from_args(args)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    try:
        serve_fake_server(fake)
    except OSError as exc:  # the port is taken, say: an error, not a usage problem
        raise _Failed(str(exc)) from None
    return EXIT_OK


def _serve(argv: list[str]) -> int:
    """``streamops serve``: the gateway parses its own options (see docs/gateway.md)."""
    for module in ("starlette", "uvicorn", "aiohttp", "httpx", "prometheus_client"):
        require(module, extra="gateway", feature="streamops serve")
    from ._gateway import cli_main

    return cli_main(argv)


# --------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------

_GLOBAL_FLAGS = ("--debug",)


def _global_flags(argv: list[str]) -> tuple[bool, list[str]]:
    """Take the global flags out of ``argv``, wherever they are (before a ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    rest = [a for a in argv[:end] if a not in _GLOBAL_FLAGS] + argv[end:]
    return debug, rest


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    debug_help = "show tracebacks (a global option: before or after the command)"
    parser = argparse.ArgumentParser(
        prog="streamops",
        description="Enforce safety and cost policies on LLM output streams while they stream.",
        epilog="Exit codes: 0 complete, 1 error, 2 usage or bad policy, 3 budget, 4 timeout,"
        " 5 blocked, 130 interrupted. Benchmarks run from a source checkout:"
        " python -m benchmarks.",
    )
    parser.add_argument("--debug", action="store_true", help=debug_help)
    parser.add_argument("--version", action="version", version=f"streamops {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, **kwargs)
        cmd.add_argument("--debug", action="store_true", help=debug_help)
        commands[name] = cmd
        return cmd

    demo = command(
        "demo",
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

    run = command(
        "run",
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

    check = command(
        "check-policy",
        help="validate a policy and print the resolved pipeline",
        description="Validate a policy file (or preset) and print the pipeline it builds.",
    )
    check.add_argument("file", help="policy file (.toml, .json, .yaml) or preset name")
    check.add_argument("--json", action="store_true", help="print the policy as JSON")
    check.set_defaults(func=_check_policy)

    # `serve` parses its own options (the gateway's contract); listed here for --help.
    sub.add_parser(
        "serve",
        help="run the policy gateway: an OpenAI- and Anthropic-compatible proxy"
        " (options: serve --help; extra: gateway)",
        add_help=False,
    )
    server = command(
        "fake-server",
        help="serve the fake model as an OpenAI/Anthropic-compatible HTTP API, for tests",
        description="Serve the fake streaming model over HTTP (/v1/chat/completions,"
        " /v1/responses, /v1/messages) for testing clients. Needs the server extra.",
    )
    add_fake_server_arguments(server)
    server.set_defaults(func=_fake_server)
    return parser, commands


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamops")
    except PackageNotFoundError:  # pragma: no cover - a tree that was never installed
        return "unknown"


def _unknown_options(cmd: argparse.ArgumentParser, extra: list[str]) -> str:
    """``unrecognized arguments: --polcy (did you mean --policy?)``, for ``cmd``'s options."""
    known = [o for action in cmd._actions for o in action.option_strings if o.startswith("--")]
    words = []
    for arg in extra:
        flag = arg.partition("=")[0]
        hint = did_you_mean(flag, known) if flag.startswith("--") else ""
        words.append(arg + hint)
    return "unrecognized arguments: " + " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamops`` command line; return the process exit code.

    >>> main(["check-policy", "cost-capped"])  # doctest: +ELLIPSIS
    cost-capped: valid
    ...
    0
    """
    debug, args_in = _global_flags(list(sys.argv[1:] if argv is None else argv))
    parser, commands = _parser()
    try:
        if args_in and args_in[0] == "serve":
            return _serve(args_in[1:])
        if args_in and not args_in[0].startswith("-") and args_in[0] not in commands:
            names = [*commands, "serve"]
            parser.error(
                f"unknown command {args_in[0]!r}{did_you_mean(args_in[0], names)};"
                f" commands: {', '.join(names)}"
            )
        if args_in and args_in[0] in commands:
            # Unknown options first: argparse would report a missing required
            # option instead, when the unknown one is its misspelling.
            cmd = commands[args_in[0]]
            known = {o for action in cmd._actions for o in action.option_strings}
            unknown = [
                a for a in args_in[1:] if a.startswith("--") and a.partition("=")[0] not in known
            ]
            if unknown:
                cmd.error(_unknown_options(cmd, unknown))
        args, extra = parser.parse_known_args(args_in)
        if extra:
            cmd = commands[args.command]
            cmd.error(_unknown_options(cmd, extra))
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        sys.stderr.write("streamops: interrupted\n")
        return EXIT_INTERRUPTED
    except MissingExtraError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"streamops: error: {exc}\n")
        return EXIT_USAGE
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
