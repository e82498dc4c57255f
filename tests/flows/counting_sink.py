"""A fast SMTP sink on loopback that counts what it accepted, per recipient.

``python -m tests.flows.counting_sink`` listens on an unused 127.0.0.1 port, prints it on the
first line, and answers SMTP (with PIPELINING) on asyncio, thousands of messages a second: a
message counts for its recipients once its data is complete and answered ``250``. On SIGTERM
(or its standard input closing) it prints the counts as one JSON object and exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter

COUNTS: Counter[str] = Counter()


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    recipients: list[str] = []
    queued = 0
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"HELO":
                writer.write(b"250 sink\r\n")
            elif verb == b"MAIL":
                recipients = []
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                address = line.partition(b":")[2].strip().strip(b"<>").split(b">")[0]
                recipients.append(address.decode("utf-8", "replace").lower())
                writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                COUNTS.update(recipients)
                queued += 1
                writer.write(f"250 2.0.0 Ok: queued as S{queued}\r\n".encode())
                recipients = []
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:  # RSET, NOOP
                recipients = [] if verb == b"RSET" else recipients
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # a sender killed mid-message: that message was not accepted
    finally:
        writer.close()


async def _main() -> None:
    server = await asyncio.start_server(_session, "127.0.0.1", 0, limit=1 << 24)
    print(server.sockets[0].getsockname()[1], flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.read(1) else None)
    async with server:
        await done.wait()
    print(json.dumps(COUNTS), flush=True)


if __name__ == "__main__":
    asyncio.run(_main())
