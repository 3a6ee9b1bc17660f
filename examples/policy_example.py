"""Apply one reviewed policy file to a model's stream, with retries around it.

Run it: ``python examples/policy_example.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import streamops as so

POLICY = """\
name = "support-bot"

[timeout]
idle = 10.0

[redact]
patterns = ["secrets", "email"]

[[redact.custom]]
name = "ticket"
pattern = "TCK-[0-9]{6}"
label = "[TICKET]"

[budget]
max_tokens = 60

[collect]

[retry]
attempts = 2
backoff = { initial = 0.0, jitter = 0.0 }
"""


async def run(policy: so.Policy) -> str:
    """Stream a fake answer through the policy; the first attempt fails and is retried."""
    model = so.FakeStreamingModel(
        [
            ConnectionResetError("connection dropped"),
            "Your ticket TCK-123456 is open; we will mail jo@example.com today.",
        ],
        delay=0.001,
    )
    stream = policy.wrap(lambda: model.astream("status of my ticket?"))
    text = "".join([piece async for piece in stream])
    attempts = [a.outcome for a in stream.report["retry"].attempts]
    print(text)
    print("attempts:", attempts, "| stop:", stream.report.stop_reason)
    return text


def main() -> str:
    """Write the policy to a file, load it as a reviewer would, and run it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "support-bot.toml"
        path.write_text(POLICY)
        policy = so.Policy.from_file(path)
    print(policy.describe())
    return asyncio.run(run(policy))


if __name__ == "__main__":
    main()
