"""Agent self-update: A/B releases beside the box's runtime, a launcher, a trial
(decision 0041).

- ``releases``  the layout under the root (``releases/<version>-<sha8>/``, the
                ``current`` and ``previous`` links, ``trial.json``): unpack, switch,
                roll back, each step atomic. Standard library only: the launcher uses it.
- ``launcher``  ``storefleet-edge-launcher``, what the process supervisor runs: settles
                the trial (rolls back a release whose trial failed), then execs the agent
                of ``current``.
- ``trial``     the agent side: commits a trial once the new agent is healthy, restarts
                it when it is not by the deadline, reports the outcome through the outbox.

The installer of ``agent`` artifacts is ``edge_agent.installers.agent``; the trial runs
in the default-on module ``edge_agent.modules.selfupdate``.

Nothing here may import more than the standard library at package level: the launcher
runs on every start of the agent, before it.
"""
