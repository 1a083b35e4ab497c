"""One knet host of the netns system test, driven over JSON lines on stdin/stdout.

Run inside a network namespace by tests/test_knet_netns.py::

    ip netns exec NS python tests/knet_netns_agent.py --host-id N --config JSON

The config names every host's link addresses (``{"hosts": {"1": [ip0, ip1], ...}}``),
the UDP ``port``, the link ``policy``, the shared ``key_file`` and the heartbeat
timers. The agent opens a knet handle with crypto on, adds every other host with one
link per address, and then answers commands, one JSON object per line on stdin; each
reply carries the command's ``id``::

    {"id": 1, "cmd": "status"}                     links, latency, MTU, stream position
    {"id": 2, "cmd": "send", "to": [2], "seq": 7, "size": 100}
    {"id": 3, "cmd": "stream", "to": [2, 3], "rate": 200, "size": 300,
     "big_every": 0, "big_size": 3000}            numbered payloads at a steady rate
    {"id": 4, "cmd": "stream_stop"}                -> {"last_seq": n}
    {"id": 5, "cmd": "quit"}

It also prints events as they happen, each with ``t`` = ``time.monotonic()`` (the same
clock in every namespace): ``ready``, ``link_up``, ``link_down`` (with the stream's
last sent sequence number), ``host_reachable``, ``host_unreachable``, ``data_mtu`` and
``rx`` (one per delivered payload: source host, sequence number, size, and whether
the content was intact). knet's own logs go to stderr. The agent exits when stdin
closes, so it never outlives the test.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from typing import Any

import structlog
import trio

import knet

_SEQ = struct.Struct("!I")


def make_payload(seq: int, size: int) -> bytes:
    """``size`` bytes (at least 4): the sequence number, then a pattern derived from it."""
    head = _SEQ.pack(seq)
    size = max(size, len(head))
    pattern = bytes((seq + i) & 0xFF for i in range(251))
    body = (pattern * (size // len(pattern) + 1))[: size - len(head)]
    return head + body


def check_payload(payload: bytes) -> tuple[int, bool]:
    """The sequence number of a payload and whether its content is intact."""
    if len(payload) < _SEQ.size:
        return -1, False
    (seq,) = _SEQ.unpack_from(payload)
    return seq, payload == make_payload(seq, len(payload))


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def event(kind: str, **fields: Any) -> None:
    emit({"ev": kind, "t": time.monotonic(), **fields})


class Agent:
    def __init__(self, handle: knet.KnetHandle, host_id: int, peers: list[int]) -> None:
        self.handle = handle
        self.host_id = host_id
        self.peers = peers
        self.stream_seq = 0
        self.stream_scope: trio.CancelScope | None = None

    # ---------------------------------------------------------------- commands

    def status(self) -> dict[str, Any]:
        hosts: dict[str, Any] = {}
        for peer in self.peers:
            host = self.handle.host_status(peer)
            links: dict[str, Any] = {}
            for link_id in host.link_ids:
                link = self.handle.link_status(peer, link_id)
                stats = link.stats
                links[str(link_id)] = {
                    "connected": link.connected,
                    "enabled": link.enabled,
                    "mtu": link.mtu,
                    "backoff": link.backoff,
                    "pong_timeout_adj_ms": link.pong_timeout_adj_ms,
                    **{
                        key: stats[key]
                        for key in (
                            "latency_min_us",
                            "latency_ave_us",
                            "latency_max_us",
                            "latency_samples",
                            "up_count",
                            "down_count",
                            "tx_data_packets",
                            "rx_data_packets",
                            "rx_duplicates",
                            "tx_total_errors",
                            "rx_auth_failures",
                            "rx_replayed",
                        )
                    },
                }
            hosts[str(peer)] = {
                "reachable": host.reachable,
                "active_links": list(host.active_links),
                "links": links,
            }
        return {
            "hosts": hosts,
            "data_mtu": self.handle.data_mtu,
            "stream_seq": self.stream_seq,
            "rx_channel_overflows": self.handle.rx_channel_overflows,
        }

    async def run_stream(
        self, to: list[int], rate: float, size: int, big_every: int, big_size: int
    ) -> None:
        """Send numbered payloads at ``rate`` per second until cancelled."""
        interval = 1.0 / rate
        next_at = trio.current_time()
        while True:
            seq = self.stream_seq + 1
            length = big_size if big_every and seq % big_every == 0 else size
            self.handle.send(make_payload(seq, length), hosts=to)
            self.stream_seq = seq
            next_at += interval
            await trio.sleep_until(next_at)

    async def command(self, nursery: trio.Nursery, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "send":
            payload = make_payload(int(request["seq"]), int(request.get("size", 64)))
            return {"sent_to": self.handle.send(payload, hosts=request.get("to"))}
        if cmd == "stream":
            if self.stream_scope is not None:
                raise RuntimeError("a stream is already running")
            scope = trio.CancelScope()
            self.stream_scope = scope
            self.stream_seq = int(request.get("start_seq", 1)) - 1

            async def stream() -> None:
                with scope:
                    await self.run_stream(
                        list(request["to"]),
                        float(request.get("rate", 200)),
                        int(request.get("size", 256)),
                        int(request.get("big_every", 0)),
                        int(request.get("big_size", 3000)),
                    )

            nursery.start_soon(stream)
            return {"started": True}
        if cmd == "stream_stop":
            if self.stream_scope is not None:
                self.stream_scope.cancel()
                self.stream_scope = None
            return {"last_seq": self.stream_seq}
        raise RuntimeError(f"unknown command {cmd!r}")


async def forward_events(agent: Agent, events: trio.MemoryReceiveChannel[knet.Event]) -> None:
    async for ev in events:
        if isinstance(ev, knet.LinkUp):
            event("link_up", host=ev.host_id, link=ev.link_id, stream_seq=agent.stream_seq)
        elif isinstance(ev, knet.LinkDown):
            event(
                "link_down",
                host=ev.host_id,
                link=ev.link_id,
                reason=ev.reason.name,
                stream_seq=agent.stream_seq,
            )
        elif isinstance(ev, knet.HostReachable):
            event("host_reachable", host=ev.host_id)
        elif isinstance(ev, knet.HostUnreachable):
            event("host_unreachable", host=ev.host_id)
        elif isinstance(ev, knet.DataMtuChanged):
            event("data_mtu", data_mtu=ev.data_mtu, previous=ev.previous)


async def forward_data(data: trio.MemoryReceiveChannel[knet.DataReceived]) -> None:
    async for message in data:
        seq, intact = check_payload(message.payload)
        event("rx", src=message.src_host, seq=seq, size=len(message.payload), ok=intact)


async def read_commands(agent: Agent, nursery: trio.Nursery) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                return  # the test went away: stop
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                request = json.loads(line)
                if request.get("cmd") == "quit":
                    emit({"reply": request.get("id"), "ok": True})
                    return
                try:
                    result = await agent.command(nursery, request)
                except Exception as exc:
                    emit({"reply": request.get("id"), "ok": False, "error": repr(exc)})
                else:
                    emit({"reply": request.get("id"), "ok": True, **result})


async def main(host_id: int, config: dict[str, Any]) -> None:
    hosts: dict[int, list[str]] = {int(k): list(v) for k, v in config["hosts"].items()}
    port = int(config.get("port", 5405))
    policy = knet.LinkPolicy.from_name(config.get("policy", "passive"))
    options = knet.LinkOptions(
        ping_interval_ms=int(config.get("ping_interval_ms", 100)),
        ping_timeout_ms=int(config.get("ping_timeout_ms", 400)),
        pong_count=int(config.get("pong_count", 2)),
    )
    crypto = knet.CryptoConfig(knet.read_authkey(config["key_file"]))
    peers = sorted(h for h in hosts if h != host_id)
    async with knet.open_handle(host_id, crypto=crypto) as handle:
        agent = Agent(handle, host_id, peers)
        data = handle.open_channel(0)
        events = handle.subscribe()
        for peer in peers:
            handle.add_host(peer, policy=policy)
            for link_id, (local_ip, remote_ip) in enumerate(
                zip(hosts[host_id], hosts[peer], strict=True)
            ):
                handle.set_link(
                    peer, link_id, local=(local_ip, port), remote=(remote_ip, port), options=options
                )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward_events, agent, events)
            nursery.start_soon(forward_data, data)
            event("ready", host=host_id, peers=peers)
            await read_commands(agent, nursery)
            nursery.cancel_scope.cancel()


def cli() -> None:
    parser = argparse.ArgumentParser(description="one knet host of the netns system test")
    parser.add_argument("--host-id", type=int, required=True)
    parser.add_argument("--config", required=True, help="JSON object, see the module doc")
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    trio.run(main, args.host_id, json.loads(args.config))


if __name__ == "__main__":
    cli()
