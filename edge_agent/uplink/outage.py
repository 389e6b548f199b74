"""How a reconnect loop reports an outage: one WARNING when it starts, one INFO when it ends.

A 10-minute partition with a 0.5-30 s backoff is dozens of failed reconnects; logging
each (paho logs every lost socket as an ERROR, "failed to receive on socket") buries
the one fact an operator needs: the link is down since T. So the supervising loop
tells an ``Outage`` what happened and it logs the edges, not the attempts::

    outage.lost(err)      # the link failed (a session ended, or a connect failed)
    outage.over()         # a session is up again: INFO with duration and failed attempts

Each failed attempt inside an outage is logged at DEBUG only, unless the broker starts
refusing the box (cause ``tls`` or ``refused`` where the attempt before had another):
a box whose first attempt timed out and whose later ones are refused for its
certificate says so once. The gauges
(``storefleet_uplink_connected``, ``storefleet_uplink_cloud_ready``) carry the state.
Used by both reconnect loops: the uplink's and the local bus consumer's.

``mqtt_logger(name)`` is the logger to give an aiomqtt client: paho's per-attempt socket
ERRORs become DEBUG records there, since the ``LinkError`` for the same event reaches
the loop's ``Outage``.
"""

from __future__ import annotations

import logging

from protocols.clock import Clock

logger = logging.getLogger(__name__)


class Outage:
    def __init__(self, what: str, *, clock: Clock, log: logging.Logger = logger) -> None:
        self._what = what
        self._clock = clock
        self._log = log
        self._since: float | None = None  # monotonic start of the current outage
        self.failed_attempts = 0  # reconnects that failed in the current outage
        self._cause: str | None = None  # the last failed attempt's cause, if classified

    @property
    def active(self) -> bool:
        return self._since is not None

    def lost(self, err: BaseException, *, cause: str | None = None) -> None:
        """The link failed: the first failure starts an outage, later ones are counted.
        ``cause`` classifies a failed connect; a refusal new in this outage is a WARNING."""
        if self._since is None:
            self._since = self._clock.monotonic()
            self.failed_attempts = 0
            self._cause = cause
            self._log.warning("%s outage started: %s; reconnecting with backoff",
                              self._what, err)
            return
        self.failed_attempts += 1
        changed, self._cause = cause != self._cause, cause
        if changed and cause in ("tls", "refused"):  # "network" is what outages are
            self._log.warning("%s outage goes on, the cause is now %s: %s",
                              self._what, cause, err)
            return
        self._log.debug("%s reconnect %d failed: %s", self._what, self.failed_attempts, err)

    def over(self) -> None:
        """A session is up again; ends the current outage, if any."""
        if self._since is None:
            return
        lasted = self._clock.monotonic() - self._since
        self._log.info("%s outage ended after %.1f s: %d failed reconnects",
                       self._what, lasted, self.failed_attempts)
        self._since = None
        self.failed_attempts = 0
        self._cause = None


class _LostSocketAsDebug(logging.Filter):
    """paho logs each lost or reset socket as an ERROR ("failed to receive on socket"):
    one per failed reconnect during an outage. The client raises for the same event and
    the loop's ``Outage`` reports it, so these become DEBUG records."""

    _PREFIXES = ("failed to receive on socket", "timeout on socket")

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self._log = log

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(self._PREFIXES):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            # Handlers judge the record's new level; the logger's was checked for ERROR.
            return self._log.isEnabledFor(logging.DEBUG)
        return True


def mqtt_logger(name: str) -> logging.Logger:
    """The logger for one kind of aiomqtt client (not the shared "mqtt" logger, which
    other clients in the process use), with paho's lost-socket ERRORs as DEBUG."""
    log = logging.getLogger(name)
    if not any(isinstance(f, _LostSocketAsDebug) for f in log.filters):
        log.addFilter(_LostSocketAsDebug(log))
    return log
