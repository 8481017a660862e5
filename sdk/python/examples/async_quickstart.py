"""AsyncSandbox: the same calls with await; three sandboxes work at once.

    FORKBOX_HOST=127.0.0.1:7070 python3 sdk/python/examples/async_quickstart.py
"""

import asyncio

from forkbox import AsyncSandbox


async def square(n: int) -> int:
    async with await AsyncSandbox.create() as sb:
        r = await sb.run_code(f"import time\ntime.sleep(0.2)\n{n} ** 2")
        return r.result


async def main() -> None:
    print(await asyncio.gather(square(2), square(3), square(4)))


asyncio.run(main())
