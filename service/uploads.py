"""Which files a job may name, and model files uploaded through the protocol.

A run spec from a client names models and weights by path, and the agent's workers
would open whatever it names. ``ModelAccess`` confines those paths to the uploads folder
and the folders given with ``--model-dir`` (after resolving symlinks), and answers the
same way whether or not a refused file exists, so it reveals nothing about the host.

An upload is chunked (``upload_begin`` / ``upload_chunk`` / ``upload_end``), bounded in
size, checked against its sha256, and written under a temporary name first. Names are
sanitised to a plain file name, so nothing is written outside the uploads folder. Files
keep their names (an OpenVINO IR needs ``model.xml`` beside ``model.bin``); a name that
already holds other content is refused rather than overwritten.

Uploads in progress are bounded per connection and in total, so that one client cannot
lock the others out. Each is refused up front unless the disk has room for it and for
the rest of those in progress; a write that fails anyway (a full disk) drops the upload
and answers with a one-line error.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ProtocolError, UsageError
from core.protocol.codes import NOT_FOUND, UPLOAD_CHUNK_BYTES, UPLOAD_ERROR
from core.zoo.files import is_model_file
from core.zoo.registry import find_zoo_card, looks_like_path

log = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".onnx", ".xml", ".bin", ".pt", ".pth")
MAX_PARTIAL_UPLOADS = 16
MAX_PARTIAL_UPLOADS_PER_CLIENT = 4
FREE_SPACE_MARGIN_BYTES = 64 << 20
_INDEX = "index.json"
_FINISH_OR_ABORT = (
    "Finish or abort an upload first: upload_end stores a complete one and drops an "
    "unfinished one, and closing the connection drops all of its uploads."
)
_PARTIAL = ".partial"


class PathRefusedError(UsageError):
    """A client named a file outside the folders the agent may read models from."""


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


class ModelAccess:
    """Resolves model and weights paths from clients inside the allowed folders."""

    def __init__(self, allowed_dirs: Iterable[Path]) -> None:
        self.roots = tuple(Path(os.path.realpath(d)) for d in allowed_dirs)

    def _refused(self, name: str, what: str) -> PathRefusedError:
        return PathRefusedError(
            f"The agent does not read the {what} {name!r}: it only reads files from its "
            f"uploads folder and the folders given with --model-dir.",
            "Upload the file (`backbench remote submit -m FILE` does it for you), or start "
            "the agent with --model-dir FOLDER.",
        )

    def resolve_file(self, name: str, what: str = "model file") -> Path:
        given = Path(name).expanduser()
        candidates = [given] if given.is_absolute() else [root / given for root in self.roots]
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if not _within(real, self.roots) or not real.is_file():
                continue
            if real.suffix.lower() == ".xml":
                weights = Path(os.path.realpath(real.with_suffix(".bin")))
                if weights.exists() and not _within(weights, self.roots):
                    continue  # a .bin symlinked out of the allowed folders
            return real
        raise self._refused(name, what)

    @staticmethod
    def resolve_dataset(name: str, data_dirs: Iterable[Path]) -> Path:
        """The real path of a dataset folder inside one of the agent's --data-dir folders
        (a relative name is looked up in each, in order)."""
        roots = tuple(Path(os.path.realpath(d)) for d in data_dirs)
        if not roots:
            raise PathRefusedError(
                "This agent runs no accuracy jobs: it was started without --data-dir.",
                "Start the agent with --data-dir FOLDER (a folder holding the datasets).",
            )
        given = Path(name).expanduser()
        candidates = [given] if given.is_absolute() else [root / given for root in roots]
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if _within(real, roots) and real.is_dir():
                return real
        raise PathRefusedError(
            f"The agent does not read the dataset {name!r}: it reads datasets only from "
            f"folders inside its --data-dir ({', '.join(str(r) for r in roots)}).",
            "Give a dataset folder inside one of those, relative to it or absolute.",
        )

    def resolve_model(self, name: str) -> str:
        """A zoo name unchanged, or the absolute real path of an allowed model file."""
        if not is_model_file(name) and (
            find_zoo_card(name) is not None or not looks_like_path(name)
        ):
            return name  # a zoo name (or a misspelt one, which the zoo explains)
        return str(self.resolve_file(name))


def sanitize_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    if not clean:
        raise ProtocolError(
            UPLOAD_ERROR,
            f"{name!r} is not a usable file name.",
            "Give a plain file name such as model.onnx.",
        )
    if Path(clean).suffix.lower() not in UPLOAD_SUFFIXES:
        raise ProtocolError(
            UPLOAD_ERROR,
            f"Uploads must be model or weights files ({', '.join(UPLOAD_SUFFIXES)}); got {clean!r}.",
            "Export the model to ONNX or OpenVINO IR first (backbench export).",
        )
    return clean


def _write_failed(name: str, exc: OSError) -> ProtocolError:
    """The reply for an upload the agent could not write, which it has dropped."""
    log.warning("Upload of %s dropped: the agent could not write it (%s)", name, exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ProtocolError(
            UPLOAD_ERROR,
            f"The agent's disk is full: {name} could not be written, and the upload was dropped.",
            "Free some space on the agent host, then upload it again.",
        )
    return ProtocolError(
        UPLOAD_ERROR,
        f"The agent could not write {name}, and the upload was dropped.",
        "Check its uploads folder (the agent's log says why), then upload it again.",
    )


@dataclass(slots=True)
class _Partial:
    upload_id: str
    name: str
    size: int
    sha256: str
    owner: int
    path: Path
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class UploadManager:
    """Uploads under ``root``: finished files by name, an index of ids, partial files."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._partial: dict[str, _Partial] = {}
        self._lock = threading.RLock()  # requests run in worker threads
        self.root.mkdir(parents=True, exist_ok=True)
        partial_dir = self.root / _PARTIAL
        if partial_dir.is_dir():  # left by an agent that died mid-upload
            shutil.rmtree(partial_dir, ignore_errors=True)
        partial_dir.mkdir(mode=0o700, exist_ok=True)
        self._index: dict[str, dict[str, Any]] = self._read_index()

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.root / _INDEX).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning(
                "The uploads index %s is unreadable (%s); starting a new one",
                self.root / _INDEX,
                exc,
            )
            return {}
        return {
            k: v
            for k, v in data.items()
            if isinstance(v, dict) and (self.root / str(v.get("name"))).is_file()
        }

    def _write_index(self) -> None:
        tmp = self.root / f".{_INDEX}.tmp"
        tmp.write_text(json.dumps(self._index, indent=1), encoding="utf-8")
        os.replace(tmp, self.root / _INDEX)

    def _info(self, upload_id: str) -> dict[str, Any]:
        entry = self._index[upload_id]
        return {
            "upload_id": upload_id,
            "name": entry["name"],
            "size": entry["size"],
            "sha256": entry["sha256"],
            "path": str(self.root / entry["name"]),
            "complete": True,
        }

    def begin(self, name: str, size: int, sha256: str, owner: int) -> dict[str, Any]:
        with self._lock:
            clean = sanitize_name(name)
            if size > self.max_bytes:
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"{clean} is {size} bytes; this agent takes uploads up to {self.max_bytes} bytes.",
                    "Start the agent with a larger --max-upload-mb, or copy the file to a --model-dir.",
                )
            for upload_id, entry in self._index.items():
                if entry["name"] == clean and entry["sha256"] == sha256:
                    return self._info(upload_id)  # already here: nothing to send
            if (self.root / clean).exists() or any(p.name == clean for p in self._partial.values()):
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"An upload named {clean} with other content exists on the agent.",
                    "Upload the file under another name.",
                )
            mine = sum(p.owner == owner for p in self._partial.values())
            if mine >= MAX_PARTIAL_UPLOADS_PER_CLIENT:
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"This connection already has {mine} uploads in progress, the most it may.",
                    _FINISH_OR_ABORT,
                )
            if len(self._partial) >= MAX_PARTIAL_UPLOADS:
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"The agent already has {len(self._partial)} uploads in progress, the most "
                    "it takes at once.",
                    "Try again once one has finished, or finish or abort one of this "
                    "connection's (upload_end drops an unfinished upload).",
                )
            # The uploads in progress will need the rest of their bytes too.
            promised = sum(p.size - p.received for p in self._partial.values())
            if shutil.disk_usage(self.root).free < size + promised + FREE_SPACE_MARGIN_BYTES:
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"Not enough free disk space on the agent for {clean} ({size} bytes).",
                    "Free some space on the agent host, then upload it again.",
                )
            upload_id = secrets.token_hex(16)
            path = self.root / _PARTIAL / upload_id
            try:
                path.touch(mode=0o600)
            except OSError as exc:
                raise _write_failed(clean, exc) from None
            self._partial[upload_id] = _Partial(upload_id, clean, size, sha256, owner, path)
            log.info("Upload %s of %s (%d bytes) started", upload_id, clean, size)
            return {
                "upload_id": upload_id,
                "name": clean,
                "complete": False,
                "chunk_bytes": UPLOAD_CHUNK_BYTES,
            }

    def _get(self, upload_id: str, owner: int) -> _Partial:
        partial = self._partial.get(upload_id)
        if partial is None or partial.owner != owner:
            raise ProtocolError(
                NOT_FOUND,
                f"No upload {upload_id!r} in progress on this connection.",
                "Start one with upload_begin.",
            )
        return partial

    def chunk(self, upload_id: str, offset: int, data: bytes, owner: int) -> dict[str, Any]:
        with self._lock:
            partial = self._get(upload_id, owner)
            if offset != partial.received:
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"Expected the chunk at offset {partial.received}, got {offset}.",
                    "Send the chunks in order, from the offset given here.",
                )
            if partial.received + len(data) > partial.size:
                self.drop(upload_id)
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"More data than the {partial.size} bytes announced; upload dropped.",
                )
            try:
                with open(partial.path, "ab") as fh:
                    fh.write(data)
            except OSError as exc:
                self.drop(upload_id)
                raise _write_failed(partial.name, exc) from None
            partial.digest.update(data)
            partial.received += len(data)
            return {"upload_id": upload_id, "received": partial.received}

    def end(self, upload_id: str, owner: int) -> dict[str, Any]:
        with self._lock:
            partial = self._get(upload_id, owner)
            if partial.received != partial.size or partial.digest.hexdigest() != partial.sha256:
                self.drop(upload_id)
                what = (
                    f"{partial.received} of {partial.size} bytes arrived"
                    if partial.received != partial.size
                    else "the sha256 does not match"
                )
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"Upload of {partial.name} failed: {what}; it was dropped.",
                    "Upload it again.",
                )
            target = self.root / partial.name
            if target.exists():  # another connection finished the same name meanwhile
                self.drop(upload_id)
                raise ProtocolError(
                    UPLOAD_ERROR,
                    f"An upload named {partial.name} appeared meanwhile.",
                    "Upload under another name.",
                )
            try:
                with open(partial.path, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(partial.path, target)
            except OSError as exc:
                self.drop(upload_id)
                raise _write_failed(partial.name, exc) from None
            del self._partial[upload_id]
            self._index[upload_id] = {
                "name": partial.name,
                "size": partial.size,
                "sha256": partial.sha256,
                "created_at": time.time(),
            }
            try:
                self._write_index()
            except OSError as exc:  # an upload the index does not name would block its name
                del self._index[upload_id]
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
                raise _write_failed(partial.name, exc) from None
            log.info("Upload %s stored as %s", upload_id, target)
            return self._info(upload_id)

    def drop(self, upload_id: str) -> None:
        partial = self._partial.pop(upload_id, None)
        if partial is not None:
            with contextlib.suppress(FileNotFoundError):
                partial.path.unlink()

    def drop_owner(self, owner: int) -> None:
        """A client went away: its unfinished uploads go too."""
        with self._lock:
            for upload_id in [u for u, p in self._partial.items() if p.owner == owner]:
                self.drop(upload_id)

    def path_of(self, upload_id: str) -> Path:
        with self._lock:
            if upload_id not in self._index:
                raise ProtocolError(
                    NOT_FOUND,
                    f"No finished upload {upload_id!r} on the agent.",
                    "Upload the file first (upload_begin/chunk/end).",
                )
            return self.root / self._index[upload_id]["name"]

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._info(u) for u in self._index]
