"""pytest plugin for streamops users (registered through the ``pytest11`` entry point).

Fixtures:

- ``fake_model``: the :class:`~streamops.testing.FakeStreamingModel` class,
  to call with the script of the test.
- ``virtual_clock``: runs the (pytest-asyncio) test on a virtual clock and
  returns a :class:`~streamops.testing.VirtualClock`; in a sync test, use
  ``virtual_clock.run(coro)``.
- ``assert_closed``: :func:`streamops.testing.assert_closed`.

A test using all three (pytest-asyncio, strict mode)::

    @pytest.mark.asyncio
    async def test_timeout(fake_model, virtual_clock, assert_closed):
        model = fake_model("slow reply", first_chunk_delay=60.0)
        stream = model.astream("hi")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await anext(stream)
        await stream.aclose()
        assert virtual_clock.time() >= 5.0
        assert_closed(model)

>>> from streamops.testing import FakeStreamingModel
>>> FakeStreamingModel("ok").invoke()  # what ``fake_model("ok").invoke()`` does
'ok'
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from . import FakeStreamingModel, VirtualClock, assert_closed

__all__ = ("assert_closed_fixture", "fake_model", "virtual_clock")


@pytest.fixture
def fake_model() -> type[FakeStreamingModel]:
    """Return :class:`~streamops.testing.FakeStreamingModel`: call it to make a model.

    >>> from streamops.testing import FakeStreamingModel
    >>> list(FakeStreamingModel("a b").stream())
    ['a', ' b']
    """
    return FakeStreamingModel


@pytest.fixture
def virtual_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """Run this async test under virtual time; return the clock to read.

    It marks the test with ``looptime`` (the ``looptime`` plugin, a streamops
    dependency, then fast-forwards the test's event loop). Fixtures still run
    on real time, as looptime does. ``--no-looptime`` turns it off.

    >>> from streamops.testing import VirtualClock
    >>> async def main():
    ...     clock = VirtualClock()
    ...     await asyncio.sleep(90)
    ...     return clock.time()
    >>> import asyncio
    >>> VirtualClock.run(main())
    90.0
    """
    request.node.add_marker(pytest.mark.looptime)
    return VirtualClock()


@pytest.fixture(name="assert_closed")
def assert_closed_fixture() -> Callable[..., None]:
    """Return :func:`streamops.testing.assert_closed`.

    >>> from streamops.testing import FakeStreamingModel, assert_closed
    >>> model = FakeStreamingModel("a b")
    >>> "".join(model.stream())
    'a b'
    >>> assert_closed(model, early=False)
    """
    return assert_closed
