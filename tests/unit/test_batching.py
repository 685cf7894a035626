"""`Batcher`: calls made while one is under way go together in the next, each answered by a
send made after it, in order; failures and callers that go away touch no one else."""

import asyncio
from collections.abc import Sequence

import pytest

from tandem.batching import Batcher

pytestmark = pytest.mark.anyio


class Remote:
    """A service answering each item doubled, one round trip per send; `gate` holds the
    answer of the send under way until set."""

    def __init__(self) -> None:
        self.sends: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: BaseException | None = None

    async def send(self, items: Sequence[int]) -> list[int]:
        self.sends.append(list(items))
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 2 for item in items]


async def _until_sent(remote: Remote, sends: int) -> None:
    while len(remote.sends) < sends:
        await asyncio.sleep(0)


async def test_a_call_alone_is_sent_at_once() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    assert await batcher(1) == 2
    assert await batcher(2) == 4
    assert remote.sends == [[1], [2]]


async def test_calls_made_while_one_is_under_way_go_together_in_the_next_in_order() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    remote.gate.clear()
    first = asyncio.create_task(batcher(1))
    await _until_sent(remote, 1)
    waiting = [asyncio.create_task(batcher(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    assert remote.sends == [[1]]  # nothing else is sent while the first is under way
    remote.gate.set()
    assert await first == 2
    assert [await task for task in waiting] == [4, 6, 8, 10]
    assert remote.sends == [[1], [2, 3, 4, 5]]
    assert await batcher(6) == 12  # and the next call alone is sent at once again
    assert remote.sends[-1] == [6]


async def test_a_failed_send_fails_each_of_its_callers_and_no_other() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    remote.gate.clear()
    first = asyncio.create_task(batcher(1))
    await _until_sent(remote, 1)
    second, third = asyncio.create_task(batcher(2)), asyncio.create_task(batcher(3))
    await asyncio.sleep(0)
    remote.fail_with = ConnectionError("down")
    remote.gate.set()
    for task in (first, second, third):
        with pytest.raises(ConnectionError, match="down"):
            await task
    remote.fail_with = None
    assert await batcher(4) == 8


async def test_callers_that_go_away_cancel_neither_the_send_nor_the_others() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    remote.gate.clear()
    first = asyncio.create_task(batcher(1))
    await _until_sent(remote, 1)
    leaving, staying = asyncio.create_task(batcher(2)), asyncio.create_task(batcher(3))
    await asyncio.sleep(0)
    first.cancel()  # the one whose send is under way
    leaving.cancel()  # one waiting for the next
    await asyncio.sleep(0)
    remote.gate.set()
    assert await staying == 6
    assert remote.sends == [[1], [2, 3]]
    for task in (first, leaving):
        with pytest.raises(asyncio.CancelledError):
            await task
