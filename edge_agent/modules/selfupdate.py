"""Self-update trial (decision 0041): on by default, idle unless the agent was started by
``storefleet-edge-launcher``.

Then it runs one task, ``selfupdate-trial`` (``edge_agent.selfupdate.trial``): a new
release on trial commits once healthy, or asks for a restart at its deadline so the
launcher switches back; the outcome of the last install goes to the cloud once. The
task ends when that is done, so it is the module's own (cancelled and awaited on stop),
not a supervised child, which is meant to run for good. The install itself is the
``agent`` installer of the updates module (``edge_agent.installers.agent``).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, ClassVar

from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.selfupdate.releases import Launched

if TYPE_CHECKING:
    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor


class SelfUpdate(Module):
    name = "selfupdate"
    default_on: ClassVar[bool] = True

    def __init__(self, kernel: Kernel, settings: ModuleSettings) -> None:
        super().__init__(kernel, settings)
        # The launcher's hand-over to the process it execs (which root, which release),
        # not configuration: it is true of this process only.
        self.launched = Launched.from_environ(os.environ)
        self._task: asyncio.Task[None] | None = None

    async def start(self, tasks: Supervisor) -> None:
        if self.launched is None:
            return
        from edge_agent.selfupdate.trial import TrialRunner

        runner = TrialRunner(self.kernel, launched=self.launched)
        self._task = asyncio.create_task(runner.run(), name="selfupdate-trial")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def diagnostics(self) -> dict[str, Any]:
        if self.launched is None:
            return {"launched": False}
        return {"launched": True, "root": str(self.launched.root),
                "release": self.launched.release}


MODULE = SelfUpdate
