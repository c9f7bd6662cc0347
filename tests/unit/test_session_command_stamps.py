"""The SDK's session commands return their stamps (`sent_unix_ns`, strictly increasing in a process,
so a stamp names its command) and a block says whether it reflects a command: what `inspatio bench
session` times a command's latency by. Through the real stack: tests/integration/test_bench_session.py."""

from __future__ import annotations

import asyncio
import queue

import grpc

from inspatio_world.client.async_session import AsyncSession
from inspatio_world.client.session import Session, SessionBlock, command_stamp


def test_command_stamps_strictly_increase_and_blocks_say_which_they_reflect():
    stamps = [command_stamp() for _ in range(1000)]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))
    block = SessionBlock(0, 1, 9, [], None, [], 0.1, None, 0, command_sent_unix_ns=stamps[5])
    assert block.reflects(stamps[5]) and block.reflects(stamps[4]) and not block.reflects(stamps[6])
    assert not SessionBlock(0, 0, 0, [], None, [], 0.1, None, 0).reflects(stamps[0])  # echoes no command


def test_sync_and_async_commands_return_the_stamp_they_send():
    written = []

    class Call:
        async def write(self, request):
            written.append(request.command.sent_unix_ns)

    async def run():
        async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:  # never connects: nothing is sent on it
            session = AsyncSession(channel, lambda: iter(()))
            session._call = Call()
            return [await session.move(forward=1.0), await session.pause()]

    stamps = asyncio.run(run())
    assert stamps == written and stamps[0] < stamps[1]
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        session = Session(channel, lambda: iter(()))
        session._queue = queue.SimpleQueue()
        stamp = session.move(yaw=2.0)
        assert session._queue.get().command.sent_unix_ns == stamp > stamps[1]
