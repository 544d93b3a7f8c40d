"""The frozen ``backbench-agent``: the agent, and the processes it starts of itself.

A frozen program cannot run ``python -m core.measure.worker``: its supervisor starts
``<this executable> worker ...`` instead (``core.measure.supervisor.default_worker_command``)
and its fork server ``<this executable> zygote ...`` (``core.measure.forkserver.zygote_command``).
Those two, and ``probe`` (the framework probe, ``service.probe``), are dispatched here before
anything of the agent is imported: a worker takes its baseline memory after its own imports
only, as an exec'd ``python -m core.measure.worker`` does. Anything else is the agent's
command line (``--self-test`` and ``--version`` included).
"""

import sys


def _dispatch(argv: list) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "worker":
        from core.measure.worker import exit_now
        from core.measure.worker import main as worker_main

        exit_now(worker_main(rest))
    if command == "zygote":
        from core.measure.zygote import main as zygote_main

        zygote_main(rest)  # exits itself
    if command == "probe":
        from service.probe import main as probe_main

        return probe_main(rest)
    from service.agent import main as agent_main

    return agent_main(argv)


if __name__ == "__main__":
    sys.exit(_dispatch(sys.argv[1:]))
