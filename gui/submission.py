"""Queueing jobs on an agent: one spec, or several in order (an accuracy run's reference
first), each with a ``client_request_id``.

The agent's queue runs jobs in the order they arrive, so each spec is sent once the agent
has queued the one before. An id is kept until the agent answers: pressing Submit again
with the same specs after a lost reply sends the same ids, and the agent answers a job it
already queued as a duplicate instead of queueing a twin.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from core.errors import ProtocolError
from gui.agent_client import CONNECTION_LOST
from gui.agents import AgentConnection

logger = logging.getLogger(__name__)

Plan = list[tuple[str, dict[str, Any]]]  # (what the job is, its spec), in submission order


class SubmitSequence:
    """Submits a plan of specs to one agent, in order, with idempotent request ids."""

    def __init__(self) -> None:
        # (agent, json of the specs, a request id per spec) of a submission not yet answered
        self._unanswered: tuple[str, str, list[str]] | None = None

    def start(
        self,
        connection: AgentConnection,
        plan: Plan,
        on_job: Callable[[dict[str, Any]], None],
        on_done: Callable[[str, bool], None],
    ) -> None:
        """Submit ``plan``; ``on_job(job)`` for each job the agent queued, then
        ``on_done(text, error)`` once, with what was queued or why not."""
        key = json.dumps([spec for _label, spec in plan], sort_keys=True)
        if self._unanswered and self._unanswered[:2] == (connection.name, key):
            request_ids = self._unanswered[2]  # the agent may have queued them: same ids, no twins
        else:
            request_ids = [uuid.uuid4().hex for _ in plan]
        self._unanswered = (connection.name, key, request_ids)
        self._next(connection, plan, request_ids, [], on_job, on_done)

    def _next(self, connection: AgentConnection, plan: Plan, request_ids: list[str], queued: list[str],
              on_job: Callable[[dict[str, Any]], None], on_done: Callable[[str, bool], None]) -> None:  # fmt: skip
        label, spec = plan[len(queued)]

        def done(result: Any, error: ProtocolError | None) -> None:
            before = f" ({', '.join(queued)} queued)" if queued else ""
            what = f"the {label} job" if len(plan) > 1 else "the run"
            if error is not None:
                if error.code != CONNECTION_LOST:
                    self._unanswered = None
                    text = error.message + (f" {error.hint}" if error.hint else "")
                else:
                    text = f"{error.message} Submit again once reconnected; nothing will be queued twice."
                on_done(f"Not submitted, {what}{before}: {text}", True)
                return
            job = dict((result or {}).get("job") or {})
            again = " (already queued earlier)" if (result or {}).get("duplicate") else ""
            queued.append(f"job {job.get('job_id', '?')}{again}" + (f" ({label})" if len(plan) > 1 else ""))
            on_job(job)
            if len(queued) < len(plan):
                self._next(connection, plan, request_ids, queued, on_job, on_done)
                return
            self._unanswered = None
            text = " then ".join(queued)
            on_done(f"{text[:1].upper()}{text[1:]} queued on {connection.name}.", False)

        params = {"spec": spec, "client_request_id": request_ids[len(queued)]}
        connection.client.request("submit", params, done)
