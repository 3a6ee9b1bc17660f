"""Under trio: the text operators work, the asyncio-bound ones say so clearly (issue 15)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

import streamops as so


class Source:
    """An async source that records whether it was closed."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.closed = False

    async def _gen(self) -> AsyncIterator[str]:
        for item in self.items:
            await trio.lowlevel.checkpoint()
            yield item

    def __aiter__(self) -> AsyncIterator[str]:
        return self._gen()

    async def aclose(self) -> None:
        self.closed = True


PIECES = ["mail a@", "b.co and ", '{"a": [1, 2]}']


def test_text_operators_run_under_trio() -> None:
    async def main() -> tuple[str, str, object, list[str]]:
        redacted = "".join([x async for x in so.redact(["email"])(Source(PIECES))])
        capped = "".join(
            [x async for x in (so.budget(max_tokens=3) | so.collect())(Source(PIECES))]
        )
        values = [v async for v in so.parse_json(skip_prefix=True)(Source(PIECES))]
        a, b = so.tee(Source(PIECES), 2)
        return redacted, capped, values[-1], [x async for x in a] + [x async for x in b]

    redacted, capped, value, teed = trio.run(main)
    assert redacted == 'mail [EMAIL] and {"a": [1, 2]}'
    assert capped == "mail a@"  # three tokens: "mail", " a", "@"
    assert value == {"a": [1, 2]}
    assert teed == PIECES * 2


@pytest.mark.parametrize(
    "op",
    [
        so.timeout(total=5),
        so.cancellable(so.CancelToken()),
        so.budget(max_tokens=9, ledger=so.MemoryLedger(limit=10), key="k"),
    ],
    ids=["timeout", "cancellable", "ledger"],
)
def test_asyncio_bound_operators_say_so_and_close_the_source(op: so.Operator[str, str]) -> None:
    source = Source(PIECES)

    async def main() -> None:
        async for _ in op(source):
            pass

    with pytest.raises(so.AsyncioRequiredError, match="needs asyncio"):
        trio.run(main)
    assert source.closed


def test_retry_says_so() -> None:
    async def main() -> None:
        async for _ in so.retry(lambda: Source(PIECES)):
            pass

    with pytest.raises(so.AsyncioRequiredError, match=r"retry\(\) needs asyncio"):
        trio.run(main)
