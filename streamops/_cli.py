"""The ``streamops`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence

from . import identity

_DEMO_TEXT = (
    "Sure! Here is how to call the API. Set your key, for example "
    "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c, and write to ops@example.com "
    "if anything fails. The response looks like this: "
    '{"status": "ok", "items": [1, 2, 3]}. Good luck!'
)


def _demo_source(delay: float) -> Iterator[str]:
    for start in range(0, len(_DEMO_TEXT), 4):
        if delay:
            time.sleep(delay)
        yield _DEMO_TEXT[start : start + 4]


def _demo(args: argparse.Namespace) -> int:
    stream = identity()(_demo_source(args.delay))
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    report = stream.report
    sys.stdout.write(f"\n\nstop reason: {report.stop_reason}\n")
    sys.stdout.write(f"chunks in/out: {report.chunks_in}/{report.chunks_out}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = argparse.ArgumentParser(prog="streamops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream a built-in fake answer through the default policy")
    demo.add_argument("--delay", type=float, default=0.01, help="seconds between chunks")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
