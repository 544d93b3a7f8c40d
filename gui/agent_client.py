"""The Qt client of the agent: a QLocalSocket on the GUI thread, typed signals out.

It never blocks and needs no thread: ``readyRead`` feeds whole lines through
``core.protocol.LineDecoder``, each line becomes a reply (dispatched to the callback of
its request) or a notification (emitted as a typed signal). Telemetry samples arrive as
numpy arrays so the live view appends them in one copy.

The connection says hello first (refused on a major protocol mismatch, with the agent's
own message saying which side to upgrade), then subscribes to its topics. When the
agent goes away (restart, crash) the client retries with a growing back-off and, once
back, says hello and subscribes again by itself.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QLocalSocket

from core import __version__
from core.errors import ProtocolError
from core.protocol.address import socket_dir_hint, socket_dir_problem
from core.protocol.codes import INTERNAL_ERROR, PROTOCOL_VERSION, VERSION_MISMATCH
from core.protocol.events import GAP, TELEMETRY, TOPICS, job_event
from core.protocol.framing import FrameError, LineDecoder, encode
from core.protocol.messages import MessageError, Notification, Response, make_request, parse_message
from core.protocol.methods import check_version
from core.text import significant

logger = logging.getLogger(__name__)

START_HINT = "Start one with `backbench agent` or `systemctl start backbench-agent`."
CONNECTION_LOST = -32099  # local code for requests cut off by a disconnect
RECONNECT_MIN_MS = 250
RECONNECT_MAX_MS = 5000
READ_CHUNK_BYTES = 1 << 18

ReplyCallback = Callable[[Any, "ProtocolError | None"], None]

_EMPTY_SAMPLES = np.zeros((0, 2), dtype=np.int64)
_EMPTY_MEMORY = np.zeros((0, 3), dtype=np.float64)


class ClientState(str, enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    HANDSHAKE = "handshake"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # retrying
    REFUSED = "refused"  # version mismatch: retrying cannot help until someone upgrades


def missing_agent_text(path: str) -> str:
    return f"No agent at {path}. {START_HINT}"


def samples_array(raw: Any) -> np.ndarray:
    """[[t_ns, latency_ns], ...] -> an int64 (k, 2) array; malformed input -> empty."""
    if not raw:
        return _EMPTY_SAMPLES
    try:
        array = np.asarray(raw, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return _EMPTY_SAMPLES
    return array if array.ndim == 2 and array.shape[1] == 2 else _EMPTY_SAMPLES


def _number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.nan


def memory_array(raw: Any) -> np.ndarray:
    """Memory readings -> a float (m, 3) array: t_ns, rss_mb, device_mb (NaN if none).

    The device figure sums the readings of all devices the worker uses (usually one).
    """
    if not isinstance(raw, list) or not raw:
        return _EMPTY_MEMORY
    rows = []
    for reading in raw:
        if not isinstance(reading, dict):
            continue
        device = reading.get("device_memory")
        values = [_number(v) for v in device.values()] if isinstance(device, dict) else []
        values = [v for v in values if not math.isnan(v)]
        rows.append(
            (_number(reading.get("t_ns")), _number(reading.get("rss_mb")),
             sum(values) if values else math.nan)
        )  # fmt: skip
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def images_progress(params: Any) -> tuple[int, int] | None:
    """(images done, images in all) of an accuracy case's ``job.case_progress`` params;
    None when they are missing or malformed (never an exception: a newer or broken agent
    must not take a view down). Done is clipped to the total."""
    if not isinstance(params, dict):
        return None
    done, total = params.get("images_done"), params.get("images_total")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (done, total)):
        return None
    if total <= 0 or done < 0:
        return None
    return min(done, total), total


def images_text(done: int, total: int) -> str:
    """How an accuracy case's progress reads: "1,234 / 5,000 images"."""
    return f"{significant(done)} / {significant(total)} images"


class AgentClient(QObject):
    """One agent connection. Signals carry plain data; views subscribe to them."""

    connected = Signal(dict)  # the hello result
    disconnected = Signal(str)  # why, in words for the user
    subscribed = Signal(dict)  # the subscribe result (it names the running case)
    job_event = Signal(str, dict)  # (notification name, params)
    telemetry = Signal(int, object, object)  # (job_id, samples (k,2) int64, memory (m,3) float)
    gap = Signal(int)  # telemetry samples the agent dropped for this slow client
    error = Signal(str)  # a problem the user should see (protocol errors, refusals)
    state_changed = Signal(str)  # a ClientState value

    def __init__(
        self,
        socket_path: str,
        *,
        name: str = f"backbench-gui {__version__}",
        topics: Iterable[str] = TOPICS,
        auto_reconnect: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.socket_path = str(socket_path)
        self.client_name = name
        self.topics = list(topics)
        self.auto_reconnect = auto_reconnect
        self.hello: dict[str, Any] = {}
        self.status_text = "Not connected."
        self.state = ClientState.IDLE
        self.connect_count = 0  # successful handshakes, for the reconnection tests and the UI
        self._socket = QLocalSocket(self)
        self._socket.connected.connect(self._on_socket_connected)
        self._socket.disconnected.connect(self._on_socket_disconnected)
        self._socket.errorOccurred.connect(self._on_socket_error)
        self._socket.readyRead.connect(self._on_ready_read)
        self._decoder = LineDecoder()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, ReplyCallback | None]] = {}
        self._backoff_ms = RECONNECT_MIN_MS
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._attempt)
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect now (and keep reconnecting while ``auto_reconnect`` is on)."""
        self._closing = False
        self._backoff_ms = RECONNECT_MIN_MS
        self._retry.stop()
        self._attempt()

    def close(self) -> None:
        """Disconnect for good: no more retries."""
        self._closing = True
        self._retry.stop()
        self._socket.abort()
        self._fail_pending("The connection was closed.")
        self._set_state(ClientState.IDLE, "Disconnected.")

    @property
    def is_connected(self) -> bool:
        return self.state is ClientState.CONNECTED

    @property
    def retry_pending(self) -> bool:
        return self._retry.isActive()

    def _set_state(self, state: ClientState, text: str) -> None:
        changed = state is not self.state or text != self.status_text
        self.state = state
        self.status_text = text
        if changed:
            self.state_changed.emit(state.value)

    def _attempt(self) -> None:
        if self._closing:
            return
        self._socket.abort()
        self._decoder = LineDecoder()
        # While retrying, keep saying why the last attempt failed rather than flicker.
        retrying = self.state is ClientState.DISCONNECTED
        text = self.status_text if retrying else f"Connecting to {self.socket_path}..."
        self._set_state(ClientState.CONNECTING, text)
        folder = os.path.dirname(os.path.abspath(self.socket_path))
        problem = socket_dir_problem(folder)
        if problem is not None:
            # Another user could have put their own agent's socket there.
            self._lost(f"Will not connect to {self.socket_path}: {problem}. {socket_dir_hint(folder)}")
            return
        self._socket.connectToServer(self.socket_path)

    def _schedule_retry(self) -> None:
        if self._closing or not self.auto_reconnect or self._retry.isActive():
            return
        self._retry.start(self._backoff_ms)
        self._backoff_ms = min(RECONNECT_MAX_MS, self._backoff_ms * 2)

    # -- socket events -----------------------------------------------------------------

    def _on_socket_connected(self) -> None:
        self._set_state(ClientState.HANDSHAKE, f"Saying hello to {self.socket_path}...")
        self.request(
            "hello",
            {"protocol_version": PROTOCOL_VERSION, "client": self.client_name},
            self._on_hello,
        )

    def _on_hello(self, result: Any, error: ProtocolError | None) -> None:
        if error is None and not isinstance(result, dict):
            error = ProtocolError(VERSION_MISMATCH, "The peer's hello reply is not a backbench agent's.",
                                  "Check that the socket belongs to a backbench agent.")  # fmt: skip
        if error is None:
            try:
                check_version(str(result.get("protocol_version")), peer_role="agent")
            except ProtocolError as exc:
                error = exc
        if error is not None:
            self._refuse(error)
            return
        self.hello = dict(result)
        self.connect_count += 1
        self._backoff_ms = RECONNECT_MIN_MS
        host = self.hello.get("host", {}).get("host", "?")
        self._set_state(
            ClientState.CONNECTED,
            f"Connected to the agent on {host} (backbench {self.hello.get('agent_version', '?')}).",
        )
        self.connected.emit(self.hello)
        if self.topics:
            self.request("subscribe", {"topics": self.topics}, self._on_subscribed)

    def _refuse(self, error: ProtocolError) -> None:
        text = error.message + (f" {error.hint}" if error.hint else "")
        if error.code != VERSION_MISMATCH:
            text = f"The agent refused the handshake: {text}"
        logger.warning("Handshake with %s failed: %s", self.socket_path, text)
        self._set_state(ClientState.REFUSED, text)
        self.error.emit(text)
        self._socket.abort()

    def _on_subscribed(self, result: Any, error: ProtocolError | None) -> None:
        if error is not None:
            self.error.emit(f"Could not subscribe to live updates: {error.message}")
            return
        self.subscribed.emit(dict(result or {}))

    def _on_socket_disconnected(self) -> None:
        self._lost("The agent closed the connection.")

    def _on_socket_error(self, code: QLocalSocket.LocalSocketError) -> None:
        if code in (
            QLocalSocket.LocalSocketError.ServerNotFoundError,
            QLocalSocket.LocalSocketError.ConnectionRefusedError,
        ):
            self._lost(missing_agent_text(self.socket_path))
        elif code == QLocalSocket.LocalSocketError.SocketAccessError:
            self._lost(
                f"Permission denied on the agent socket {self.socket_path}. Join the group that "
                "owns it (usually backbench: `sudo usermod -aG backbench $USER`, then log in again)."
            )
        elif code == QLocalSocket.LocalSocketError.PeerClosedError:
            self._lost("The agent closed the connection.")
        else:
            self._lost(f"Connection to {self.socket_path} failed: {self._socket.errorString()}.")

    def _lost(self, reason: str) -> None:
        if self._closing:
            return
        was_up = self.state in (ClientState.CONNECTED, ClientState.HANDSHAKE)
        self._fail_pending(reason)
        if self.state is ClientState.REFUSED:
            return  # keep the refusal text; retrying would only repeat it
        if self.state is ClientState.DISCONNECTED and self._retry.isActive():
            return  # the second report (disconnected, then the error) of one loss
        if was_up and reason.startswith("The agent closed"):
            reason = f"Lost the agent at {self.socket_path}; reconnecting..."
        self._set_state(ClientState.DISCONNECTED, reason)
        if was_up:
            self.disconnected.emit(reason)
        self._schedule_retry()

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for method, callback in pending.values():
            if callback is not None:
                self._safe_call(callback, None, ProtocolError(CONNECTION_LOST, reason), method)

    # -- requests ----------------------------------------------------------------------

    def request(
        self, method: str, params: dict[str, Any] | None = None, callback: ReplyCallback | None = None
    ) -> int | None:
        """Send a request; ``callback(result, error)`` runs on the reply (or at once with
        an error when not connected). Returns the request id, or None if not sent."""
        if self._socket.state() != QLocalSocket.LocalSocketState.ConnectedState or (
            method != "hello" and self.state is not ClientState.CONNECTED
        ):
            if callback is not None:
                reason = self.status_text if self.state is not ClientState.CONNECTED else "Not connected."
                self._safe_call(callback, None, ProtocolError(CONNECTION_LOST, reason), method)
            return None
        request_id = next(self._ids)
        try:
            frame = encode(make_request(request_id, method, **(params or {})))
        except ProtocolError as exc:
            if callback is not None:
                self._safe_call(callback, None, exc, method)
            return None
        self._pending[request_id] = (method, callback)
        self._socket.write(frame)
        return request_id

    def _safe_call(
        self, callback: ReplyCallback, result: Any, error: ProtocolError | None, method: str
    ) -> None:
        try:
            callback(result, error)
        except Exception:  # a bug in one view must not take the connection down
            logger.exception("The reply handler of %s failed", method)

    # -- incoming ----------------------------------------------------------------------

    def _on_ready_read(self) -> None:
        while self._socket.bytesAvailable() > 0:
            data = bytes(self._socket.read(READ_CHUNK_BYTES).data())
            if not data:
                break
            for item in self._decoder.feed(data):
                if isinstance(item, FrameError):
                    logger.warning("Dropped an oversized message from %s", self.socket_path)
                    continue
                self._handle_line(item)

    def _handle_line(self, line: bytes) -> None:
        try:
            msg = parse_message(line)
        except MessageError as exc:
            logger.warning("Malformed message from %s: %s", self.socket_path, exc.message)
            return
        if isinstance(msg, Response):
            self._handle_reply(msg)
        elif isinstance(msg, Notification):
            self._handle_notification(msg.method, msg.params)

    def _handle_reply(self, msg: Response) -> None:
        entry = self._pending.pop(msg.id, None) if isinstance(msg.id, int) else None
        if entry is None:
            if msg.error is not None:  # an error about no request of ours (a bad frame)
                self.error.emit(f"The agent reported: {msg.error.message}")
            return
        method, callback = entry
        error = msg.error.to_exception() if msg.error is not None else None
        if error is not None and error.code == INTERNAL_ERROR:
            logger.error("%s failed inside the agent at %s", method, self.socket_path)
        if callback is not None:
            self._safe_call(callback, msg.result, error, method)

    def _handle_notification(self, method: str, params: dict[str, Any]) -> None:
        if method == TELEMETRY:
            job_id = params.get("job_id")
            if not isinstance(job_id, int):
                return
            samples = samples_array(params.get("samples"))
            memory = memory_array(params.get("memory"))
            if len(samples) or len(memory):
                self.telemetry.emit(job_id, samples, memory)
        elif job_event(method) is not None:
            self.job_event.emit(method, params)
        elif method == GAP:
            dropped = params.get("dropped")
            if isinstance(dropped, int) and dropped > 0:
                self.gap.emit(dropped)
        else:
            logger.debug("Ignoring the notification %s", method)
