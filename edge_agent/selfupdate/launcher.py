"""``storefleet-edge-launcher``: what the process supervisor runs (decision 0041).

    storefleet-edge-launcher --root /opt/storefleet -- run --config /etc/storefleet/edge.toml

On every start: settle the trial (``Releases.settle``: a new release that did not come
up healthy in its starts, or by its deadline, is switched back to the release it came
from), then exec the agent of ``current`` in this process (the supervisor keeps
watching one pid): ``python -P -m edge_agent <args>`` with the release directory first
on ``PYTHONPATH``, resolved now, so a switch while the agent runs does not change the
code it imports later. Without ``current`` the runtime's own agent runs.

It stays small and imports the standard library only (no typer, no pydantic): it is
the one piece a self-update never replaces, and it runs before every agent start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_agent.selfupdate.releases import (
    DEFAULT_ROOT,
    ENV_RELEASE,
    ENV_ROOT,
    ReleaseError,
    Releases,
)

logger = logging.getLogger("edge_agent.selfupdate.launcher")


def agent_command(releases: Releases, args: Sequence[str], *,
                  environ: Mapping[str, str], python: str) -> tuple[list[str], dict[str, str]]:
    """The agent's argv and environment: the release of ``current`` first on the path."""
    env = dict(environ)
    env[ENV_ROOT] = str(releases.root)
    release = releases.current()
    env[ENV_RELEASE] = release or ""
    if release is not None:
        path = str(releases.path(release).resolve())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, environ.get("PYTHONPATH")) if p)
    # -P: the working directory is not put first on the path (3.11), only the release is.
    return [python, "-P", "-m", "edge_agent", *args], env


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="storefleet-edge-launcher",
        description="Start the store agent of the current release (A/B self-update).")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"releases, links and trial.json [default: {DEFAULT_ROOT}]")
    parser.add_argument("agent_args", nargs=argparse.REMAINDER,
                        help="after --: the agent's arguments, e.g. run --config FILE")
    ns = parser.parse_args(argv)
    args = list(ns.agent_args)
    if args[:1] == ["--"]:
        args = args[1:]
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    releases = Releases(ns.root)
    try:
        trial = releases.settle(now_ms=int(time.time() * 1000))
    except (OSError, ReleaseError) as err:  # a broken root must not keep the agent down
        logger.error("agent releases under %s not settled: %s", ns.root, err)
        trial = None
    if trial is not None and trial.state == "rolled_back" and not trial.reported:
        logger.error("agent release %s %s; back to %s", trial.to, trial.detail,
                     trial.from_ or "the runtime's agent")
    elif trial is not None and trial.state == "trial":
        logger.info("agent release %s on trial: start %d of %d", trial.to, trial.starts,
                    trial.max_starts)
    cmd, env = agent_command(releases, args, environ=os.environ, python=sys.executable)
    logger.info("starting agent %s", env[ENV_RELEASE] or "of the runtime")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
