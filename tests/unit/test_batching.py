"""`Batcher`: calls made while one is under way go together in the next, each answered by a
send made after it, in order; failures and callers that go away touch no one else."""

import asyncio
from collections.abc import Sequence

import pytest

from tandem.batching import Batcher

pytestmark = pytest.mark.anyio


class Remote:
    """A service answering each item doubled, one round trip per send; `gate` holds the
    answer of the send under way until set; a send carrying one of `failing` fails."""

    def __init__(self, *failing: int) -> None:
        self.sends: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = set(failing)

    async def send(self, items: Sequence[int]) -> list[int]:
        self.sends.append(list(items))
        await self.gate.wait()
        if self.failing & set(items):
            raise ConnectionError("down")
        return [item * 2 for item in items]


async def _one_under_way(
    remote: Remote, batcher: Batcher[int, int], item: int = 1
) -> "asyncio.Task[int]":
    """A call whose send is under way: held at the gate until it is set."""
    remote.gate.clear()
    sent = len(remote.sends)
    call = asyncio.create_task(batcher(item))
    while len(remote.sends) == sent:
        await asyncio.sleep(0)
    return call


async def _made_meanwhile(batcher: Batcher[int, int], *items: int) -> list["asyncio.Task[int]"]:
    tasks = [asyncio.create_task(batcher(item)) for item in items]
    await asyncio.sleep(0)
    return tasks


async def test_a_call_alone_is_sent_at_once() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    assert await batcher(1) == 2
    assert await batcher(2) == 4
    assert remote.sends == [[1], [2]]


async def test_calls_made_while_one_is_under_way_go_together_in_the_next_in_order() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    first = await _one_under_way(remote, batcher)
    waiting = await _made_meanwhile(batcher, 2, 3, 4, 5)
    assert remote.sends == [[1]]  # nothing else is sent while the first is under way
    remote.gate.set()
    assert await first == 2
    assert [await task for task in waiting] == [4, 6, 8, 10]
    assert remote.sends == [[1], [2, 3, 4, 5]]
    assert await batcher(6) == 12  # and the next call alone is sent at once again
    assert remote.sends[-1] == [6]


async def test_a_failed_send_fails_each_of_its_callers_and_no_other() -> None:
    remote = Remote(1, 5)
    batcher = Batcher(remote.send)
    first = await _one_under_way(remote, batcher)
    second, third = await _made_meanwhile(batcher, 2, 3)
    remote.gate.set()
    with pytest.raises(ConnectionError, match="down"):
        await first
    assert [await second, await third] == [4, 6]  # sent after, and answered

    fourth = await _one_under_way(remote, batcher, 4)
    fifth, sixth = await _made_meanwhile(batcher, 5, 6)
    remote.gate.set()
    assert await fourth == 8
    for task in (fifth, sixth):  # sent together: both fail
        with pytest.raises(ConnectionError, match="down"):
            await task
    assert await batcher(7) == 14
    assert remote.sends == [[1], [2, 3], [4], [5, 6], [7]]


async def test_callers_that_go_away_cancel_neither_the_send_nor_the_others() -> None:
    remote = Remote()
    batcher = Batcher(remote.send)
    first = await _one_under_way(remote, batcher)
    leaving, staying = await _made_meanwhile(batcher, 2, 3)
    first.cancel()  # the one whose send is under way
    leaving.cancel()  # one waiting for the next
    await asyncio.sleep(0)
    remote.gate.set()
    assert await staying == 6
    assert remote.sends == [[1], [2, 3]]
    for task in (first, leaving):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_send_answering_the_wrong_number_of_items_fails_its_callers() -> None:
    """A bug in `send` reaches every caller of the batch: none is left waiting for ever."""
    remote = Remote()

    async def one_answer_short(items: Sequence[int]) -> list[int]:
        return (await remote.send(items))[:-1] if len(items) > 1 else await remote.send(items)

    batcher = Batcher(one_answer_short)
    first = await _one_under_way(remote, batcher)
    second, third = await _made_meanwhile(batcher, 2, 3)
    remote.gate.set()
    assert await first == 2
    for task in (second, third):
        with pytest.raises(ValueError, match="1 answers for a batch of 2"):
            await task
    assert await batcher(4) == 8
