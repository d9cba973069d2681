"""
The streaming backend for the benchmark (asyncio, stdlib only, HTTP/1.1
keep-alive). nginx serves the plain JSON and one-event SSE answers; this
serves what nginx cannot:

  GET|POST /a/ticks?n=N&ms=M  SSE, N events M ms apart, each carrying the
                              CLOCK_MONOTONIC time (ns) it was written at
  GET|POST /a/idle            SSE: one event at once, then nothing until the
                              peer leaves (counted in open_streams)
  GET|POST /a/big?mb=N        N MB of JSON-ish bytes (Content-Length), written
                              as fast as the peer's flow control allows
  GET      /a/stats           {"open_streams": .., "big_sent": .., ...}

Usage: python3 backend.py PORTFILE  (binds 127.0.0.1:0, writes the port)
"""

import asyncio
import json
import os
import sys
import time

STATS = {"open_streams": 0, "streams_total": 0, "big_sent": 0, "big_open": 0, "requests": 0}
CHUNK = b"x" * 65536


def head(status, ctype, length=None):
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", "Cache-Control: no-cache"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
        self.stream = None  # "idle" / "ticks" / "big" while a response is open
        self.timer = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.big_task = None

    def pause_writing(self):
        self.can_write.clear()

    def resume_writing(self):
        self.can_write.set()

    def data_received(self, data):
        self.buf += data
        while self.stream is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            method, target, _ = lines[0].split(" ", 2)
            self.handle(method, target)

    def handle(self, method, target):
        STATS["requests"] += 1
        path, _, query = target.partition("?")
        q = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if path.endswith("/stats"):
            body = json.dumps(STATS).encode()
            self.t.write(head("200 OK", "application/json", len(body)) + body)
        elif path.endswith("/idle"):
            self.open("idle")
            self.t.write(head("200 OK", "text/event-stream") + chunk(b"event: message\ndata: ready\n\n"))
        elif path.endswith("/ticks"):
            self.open("ticks")
            self.t.write(head("200 OK", "text/event-stream"))
            self.tick(0, int(q.get("n", "100")), float(q.get("ms", "10")) / 1000)
        elif path.endswith("/big"):
            self.open("big")
            size = int(float(q.get("mb", "10")) * 1024 * 1024)
            self.t.write(head("200 OK", "application/json", size))
            self.big_task = asyncio.ensure_future(self.big(size))
        else:
            body = b'{"error":"not found"}'
            self.t.write(head("404 Not Found", "application/json", len(body)) + body)

    def open(self, kind):
        self.stream = kind
        STATS["open_streams"] += 1
        STATS["streams_total"] += 1
        if kind == "big":
            STATS["big_open"] += 1
            STATS["big_sent"] = 0

    def close_stream(self):
        if self.stream is not None:
            STATS["open_streams"] -= 1
            if self.stream == "big":
                STATS["big_open"] -= 1
            self.stream = None

    def tick(self, i, n, interval):
        if self.t.is_closing():
            return
        if i >= n:
            self.t.write(b"0\r\n\r\n")
            self.close_stream()
            if self.buf:
                self.data_received(b"")
            return
        event = (b'id: %d\nevent: message\ndata: {"jsonrpc":"2.0",'
                 b'"method":"notifications/progress","params":{"t":%d}}\n\n') % (i, time.monotonic_ns())
        self.t.write(chunk(event))
        self.timer = asyncio.get_event_loop().call_later(interval, self.tick, i + 1, n, interval)

    async def big(self, size):
        sent = 0
        while sent < size:
            await self.can_write.wait()
            if self.t.is_closing():
                return
            piece = CHUNK[: min(len(CHUNK), size - sent)]
            self.t.write(piece)
            sent += len(piece)
            STATS["big_sent"] = sent
        self.close_stream()

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
        if self.big_task is not None:
            self.big_task.cancel()
        self.can_write.set()
        self.close_stream()


async def main(portfile):
    loop = asyncio.get_event_loop()
    server = await loop.create_server(Conn, "127.0.0.1", 0, backlog=8192)
    port = server.sockets[0].getsockname()[1]
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, portfile)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
