#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction (order kept, no
bandwidth limit): rel_netem's stand-in for `tc netem delay` on kernels without sch_netem.

    delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

Prints "ready" once listening. Each accepted connection gets its own connection to the target;
data read at time t is written at t + the delay then in force (order kept). A side's EOF is
forwarded the same way. The delay starts at 0: SIGUSR1 turns DELAY_MS on, SIGUSR2 off.
"""
import asyncio
import signal
import sys
import time

DELAY = [0.0]


async def pipe(reader, writer):
    queue = asyncio.Queue()

    async def read_side():
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + DELAY[0], data))
            if not data:
                return

    async def write_side():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read_side(), write_side())
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    lhost, lport, thost, tport, delay_ms = sys.argv[1:6]
    delay = int(delay_ms) / 1000.0
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: DELAY.__setitem__(0, delay))
    loop.add_signal_handler(signal.SIGUSR2, lambda: DELAY.__setitem__(0, 0.0))

    async def on_client(cr, cw):
        try:
            tr, tw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, tw), pipe(tr, cw), return_exceptions=True)

    server = await asyncio.start_server(on_client, lhost, int(lport))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.stderr.write(__doc__)
        sys.exit(64)
    asyncio.run(main())
