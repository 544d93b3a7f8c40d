"""The agent's socket: a Unix-socket server on asyncio, one reader and one sender per client.

Every frame is untrusted. The reader splits lines with ``LineDecoder`` (memory bounded
per line), checks each with ``parse_message`` and ``validate_params``, hands the request
to the handlers (``service.handlers.Api``), and answers anything wrong with an error
reply; nothing a peer sends can stop the agent. Replies never carry internal exception
text.

The server depends on the handlers, never the reverse: both share the ``Connections``
(``service.connections``), where the server registers each client and queues its
replies, and the handlers publish job events. Everything sent to a client goes through
its ``ClientQueue``: the sender task writes from that queue and waits on ``drain``
without holding up the loop, so a stalled client only fills its own bounded queue; one
whose event queue overflows is cut off. Replies are not events: a client that pipelines
requests faster than it reads the replies is not read from (so its own writes block)
while its queue is backlogged (``ClientQueue.replies_backlogged``), never cut off.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import TYPE_CHECKING, Any

from core.errors import BackbenchError, ProtocolError
from core.protocol.codes import HANDSHAKE_REQUIRED, METHOD_NOT_FOUND, VERSION_MISMATCH
from core.protocol.framing import FrameError, LineDecoder
from core.protocol.messages import (
    MessageError,
    Request,
    make_error,
    make_error_from,
    make_internal_error,
    make_result,
    parse_message,
)
from core.protocol.methods import METHODS, validate_params
from service.client_queue import ClientQueue
from service.connections import Client, Connections

if TYPE_CHECKING:
    from service.handlers import Api

log = logging.getLogger(__name__)

READ_BYTES = 1 << 16
WRITE_HIGH_WATER = 256 * 1024
CLOSE_FLUSH_S = 2.0


def peer_credentials(sock: socket.socket | None) -> tuple[int | None, int | None]:
    """(pid, uid) of the peer process, from SO_PEERCRED (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None, None
    try:
        pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
        )
    except OSError:
        return None, None
    return pid, uid


class AgentServer:
    """Serves ``api`` on a socket; the clients it accepts join ``connections``."""

    def __init__(self, api: Api, connections: Connections, client_queue_samples: int) -> None:
        self.api = api
        self.connections = connections
        self.client_queue_samples = client_queue_samples
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(self._serve_client, sock=sock)

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, flush_s: float = CLOSE_FLUSH_S) -> None:
        """Give clients ``flush_s`` to receive what is queued, then disconnect them."""
        self.stop_listening()
        for client in list(self.connections.clients):
            client.closing = True
            client.wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=flush_s)
        for client in list(self.connections.clients):
            client.writer.transport.abort()

    # -- replies (loop thread) --------------------------------------------------------------

    def reply(self, client: Client, msg: dict[str, Any]) -> None:
        try:
            self.connections.push(client, msg)
        except ProtocolError as exc:  # a result too large for one frame
            self.connections.push(client, make_error_from(msg.get("id"), exc))

    # -- one connection -------------------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client = Client(writer, ClientQueue(self.client_queue_samples))
        client.pid, client.uid = peer_credentials(writer.get_extra_info("socket"))
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.connections.add(client)
        log.info("Client %d connected (pid %s, uid %s)", client.id, client.pid, client.uid)
        sender = asyncio.create_task(self._sender(client))
        self._tasks.add(sender)
        sender.add_done_callback(self._tasks.discard)
        try:
            await self._read_loop(client, reader)
        except (ConnectionError, OSError) as exc:
            log.info("Client %d: connection lost (%s)", client.id, exc)
        except Exception:
            log.exception("Client %d: unexpected error; disconnecting it", client.id)
        finally:
            client.closing = True
            client.wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(sender), CLOSE_FLUSH_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                writer.transport.abort()
            self.connections.discard(client)
            self.api.on_disconnect(client)
            log.info("Client %d disconnected (%s)", client.id, client.queue.stats())

    async def _read_loop(self, client: Client, reader: asyncio.StreamReader) -> None:
        decoder = LineDecoder()
        while not client.closing:
            data = await reader.read(READ_BYTES)
            if not data:
                return
            for item in decoder.feed(data):
                # Checked before every request, not every read: one read can hold over
                # a thousand pipelined requests, and a handler that never awaits would
                # queue all their replies before the sender wrote one.
                while client.queue.replies_backlogged() and not client.closing:
                    await client.drained.wait()
                if client.closing:
                    return
                await self._handle(client, item)
                if client.closing:
                    return

    async def _sender(self, client: Client) -> None:
        writer = client.writer
        try:
            while True:
                client.wake.clear()
                frames = client.queue.pop_frames()
                if frames:
                    writer.write(b"".join(frames))
                    await writer.drain()
                    continue
                client.drained.set()
                if client.closing or writer.transport.is_closing():
                    break
                await client.wake.wait()
        except (ConnectionError, OSError) as exc:
            log.info("Client %d: write failed (%s)", client.id, exc)
            client.closing = True
        finally:
            # However the sender ends, the reader must not wait on it again: a set
            # `drained` with a backlogged queue would spin the event loop.
            client.closing = True
            client.drained.set()
            writer.close()

    # -- one frame ------------------------------------------------------------------------------

    async def _handle(self, client: Client, item: bytes | FrameError) -> None:
        if isinstance(item, FrameError):
            self.reply(client, make_error_from(None, item))
            return
        try:
            msg = parse_message(item)
        except MessageError as exc:
            self.reply(client, make_error(exc.request_id, exc.code, exc.message, hint=exc.hint))
            return
        if not isinstance(msg, Request):
            # Notifications and replies from a client need no answer (JSON-RPC 2.0).
            log.debug("Client %d sent a %s; ignored", client.id, type(msg).__name__)
            return
        await self._dispatch(client, msg)

    async def _dispatch(self, client: Client, req: Request) -> None:
        try:
            if not client.greeted and req.method != "hello":
                if req.method not in METHODS:
                    raise ProtocolError(METHOD_NOT_FOUND, f"Unknown method {req.method[:40]!r}.")
                raise ProtocolError(
                    HANDSHAKE_REQUIRED,
                    "Send hello first.",
                    "The first request on a connection must be hello with your protocol_version.",
                )
            params = dict(req.params)
            extra = self.api.take_test_params(req.method, params)
            params = validate_params(req.method, params)
            params.update(extra)
            result = await self.api.call(client, req.method, params)
        except BackbenchError as exc:
            self.reply(client, make_error_from(req.id, exc))
            if (
                isinstance(exc, ProtocolError)
                and exc.code == VERSION_MISMATCH
                and not client.greeted
            ):
                # A failed handshake ends the connection; a bad second hello on a
                # connection that already agreed on a version only gets the error.
                log.warning(
                    "Client %d speaks another protocol version; disconnecting it", client.id
                )
                client.closing = True  # the sender flushes the refusal, then closes
            return
        except Exception:
            log.exception("Client %d: %s failed", client.id, req.method)
            self.reply(client, make_internal_error(req.id))
            return
        self.reply(client, make_result(req.id, result))
