"""The agent's connected clients, and the fan-out of what is pushed to them.

``Connections`` is the one place that knows who is connected and what each subscribed
to. The server adds and removes clients and queues its replies here; the handlers get
only its ``publish_event`` and ``describe`` (so they never hold the server), and the
LoopBridge hands it the dispatcher's events and telemetry. Everything runs on the loop
thread.

Everything for a client goes through its ``ClientQueue``: replies and job events are
never dropped, and a client whose event queue overflows (a subscriber that does not read
its events; replies are held back by pausing reads instead) is cut off; telemetry is
dropped oldest-first with a ``gap`` notice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from core.protocol.events import TOPIC_JOBS, TOPIC_TELEMETRY
from service.client_queue import ClientQueue

log = logging.getLogger(__name__)

_client_ids = itertools.count(1)


@dataclass(eq=False)
class Client:
    """One connection: its outbound queue, who it is, and what it subscribed to."""

    writer: asyncio.StreamWriter
    queue: ClientQueue
    id: int = field(default_factory=lambda: next(_client_ids))
    pid: int | None = None
    uid: int | None = None
    name: str = ""
    greeted: bool = False
    topics: set[str] = field(default_factory=set)
    job_filter: int | None = None
    closing: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, topic: str, job_id: int) -> bool:
        return topic in self.topics and (self.job_filter is None or self.job_filter == job_id)

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.id,
            "name": self.name,
            "uid": self.uid,
            "pid": self.pid,
            "topics": sorted(self.topics),
            "queue": self.queue.stats(),
        }


class Connections:
    """The connected clients; publishes job events and telemetry to those subscribed."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def discard(self, client: Client) -> None:
        self.clients.discard(client)

    def describe(self) -> list[dict[str, Any]]:
        return [client.describe() for client in self.clients]

    def push(self, client: Client, msg: dict[str, Any]) -> None:
        """Queue a reply or a job event for ``client``; one that cannot take it is cut off.

        Replies alone never fill a queue: the server stops reading a client's requests
        while its queue is backlogged. What fills it is job events a subscriber does not
        read."""
        if not client.queue.push_event(msg):
            if not client.closing:
                log.warning("Client %d is not reading its events; disconnecting it", client.id)
                client.closing = True
                client.writer.transport.abort()
            return
        self.kick(client)

    @staticmethod
    def kick(client: Client) -> None:
        """Wake the client's sender: there is something new to write."""
        client.drained.clear()
        client.wake.set()

    def publish_event(self, msg: dict[str, Any], job_id: int) -> None:
        for client in list(self.clients):
            if client.wants(TOPIC_JOBS, job_id):
                self.push(client, msg)

    def publish_samples(self, job_id: int, case_index: int, samples: list[list[int]]) -> None:
        for client in list(self.clients):
            if client.wants(TOPIC_TELEMETRY, job_id):
                client.queue.push_telemetry(job_id, samples, case_index)
                self.kick(client)

    def publish_memory(self, job_id: int, case_index: int, reading: dict[str, Any]) -> None:
        for client in list(self.clients):
            if client.wants(TOPIC_TELEMETRY, job_id):
                client.queue.push_memory(
                    job_id, reading["t_ns"], reading["rss_mb"], reading["device_memory"], case_index
                )
                self.kick(client)
