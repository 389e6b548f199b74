"""The A/B layout of agent releases on the box, every change atomic (decision 0041).

    <root>/                       (/opt/storefleet by default: deploy/systemd)
      .venv/                      the runtime: Python, the dependencies, the launcher
      releases/<version>-<sha8>/  one agent release each (``pip install --target``)
      current -> releases/...     what the launcher runs (absent: the runtime's own agent)
      previous -> releases/...    what ``current`` was before the last switch
      trial.json                  the last agent install: its state and outcome

Why it cannot be left without an agent: a release directory appears only by
``os.rename`` of a complete ``pip install --target`` (a ``.partial`` left by a kill is
never linked, and removed by the next install); a link is switched by ``os.replace`` of
a new symlink; ``trial.json`` is replaced whole. So ``current`` names a complete release
(or nothing, and the runtime's own agent runs) whatever instant the power goes.

The trial (``Trial.state``): ``unpacking`` (written before the unpack) -> ``trial``
(written before the switch) -> ``committed`` (the new agent was healthy) or
``rolled_back`` (the launcher switched back: too many starts, or past the deadline);
``failed`` when the agent stopped before the switch. Each outcome is reported once
(``reported``).

Standard library only: the launcher imports this module on every start.
"""

from __future__ import annotations

import contextlib
import email.parser
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from edge_agent.errors import AgentError

DEFAULT_ROOT = Path("/opt/storefleet")
# The launcher hands these to the agent it execs (the agent learns where it came from).
ENV_ROOT = "STOREFLEET_AGENT_ROOT"
ENV_RELEASE = "STOREFLEET_AGENT_RELEASE"
# A release that cannot stay up for three starts is broken: an import error shows at the
# first, and three rule out a one-off (a power cut while starting).
MAX_STARTS = 3
# pip installs a release of a few MB in seconds; ten minutes is a wedged pip.
PIP_TIMEOUT_S = 600

TrialState = Literal["unpacking", "trial", "committed", "rolled_back", "failed"]
OUTCOMES: tuple[TrialState, ...] = ("committed", "rolled_back", "failed")


class ReleaseError(AgentError):
    """An agent release could not be unpacked (``reason``: not_a_wheel, wrong_wheel,
    unpack_failed)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def release_name(version: str, sha256: str) -> str:
    return f"{version}-{sha256[:8]}"


@dataclass
class Trial:
    """``trial.json``: the last agent install (from and to are release names; None is
    the runtime's own agent)."""

    rollout_id: str
    sha256: str
    version: str
    to: str
    from_: str | None
    deadline_ms: int  # wall clock: the offer's deadline
    state: TrialState = "unpacking"
    starts: int = 0  # starts of ``to`` under trial, counted by the launcher
    max_starts: int = MAX_STARTS
    detail: str = ""
    reported: bool = False  # the outcome is in the outbox

    def to_json(self) -> str:
        data = asdict(self)
        data["from"] = data.pop("from_")
        return json.dumps({"v": 1, **data}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Trial:
        data = json.loads(text)
        data.pop("v", None)
        data["from_"] = data.pop("from")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Launched:
    """How this agent process was started: by the launcher (root, and the release it
    runs; None: the runtime's own agent), or not (``from_environ`` is None)."""

    root: Path
    release: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Launched | None:
        root = environ.get(ENV_ROOT)
        if not root:
            return None
        return cls(Path(root), environ.get(ENV_RELEASE) or None)


def wheel_identity(wheel: Path) -> tuple[str, str, str]:
    """(distribution, version, first tag) from the wheel's own ``.dist-info``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            infos = [n for n in zf.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/WHEEL")]
            if len(infos) != 1:
                raise ReleaseError("not_a_wheel", f"{len(infos)} .dist-info/WHEEL files")
            info = infos[0].split("/")[0]
            parser = email.parser.Parser()
            meta = parser.parsestr(zf.read(f"{info}/METADATA").decode())
            tags = parser.parsestr(zf.read(infos[0]).decode()).get_all("Tag") or []
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise ReleaseError("not_a_wheel", f"{type(err).__name__}: {err}") from err
    if not (meta["Name"] and meta["Version"] and tags):
        raise ReleaseError("not_a_wheel", "Name, Version or Tag missing")
    return str(meta["Name"]), str(meta["Version"]), str(tags[0])


def _sync_dir(path: Path) -> None:
    """A rename or a new link survives a power cut only once its directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Releases:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.trial_path = root / "trial.json"

    # ---- links -------------------------------------------------------------------------

    def _link(self, name: str) -> str | None:
        try:
            target = os.readlink(self.root / name)
        except FileNotFoundError:
            return None
        return Path(target).name

    def current(self) -> str | None:
        return self._link("current")

    def previous(self) -> str | None:
        return self._link("previous")

    def path(self, release: str) -> Path:
        return self.releases / release

    def _set_link(self, name: str, release: str | None) -> None:
        link = self.root / name
        if release is None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
        else:
            tmp = self.root / f".{name}.tmp"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(Path("releases") / release)  # relative: the root may move
            os.replace(tmp, link)
        _sync_dir(self.root)

    def switch(self, release: str) -> None:
        """``current`` -> ``release``; ``previous`` -> what ``current`` was. Previous is
        switched first: a stop between the two leaves ``current`` as it was."""
        if not self.path(release).is_dir():
            raise ReleaseError("unpack_failed", f"release {release} is not unpacked")
        was = self.current()
        if was != release:
            self._set_link("previous", was)
        self._set_link("current", release)

    def switch_back(self, release: str | None) -> None:
        """``current`` -> ``release`` (None: the runtime's own agent); no previous."""
        self._set_link("current", release)
        self._set_link("previous", None)

    # ---- releases ----------------------------------------------------------------------

    def unpack(self, wheel: Path, release: str, *, python: str, version: str) -> Path:
        """``pip install --no-deps --no-index --target`` into a ``.partial``, then renamed
        into place; a release already there is complete (only a rename makes one)."""
        final = self.path(release)
        if final.is_dir():
            return final
        dist, wheel_version, tag = wheel_identity(wheel)
        if dist.lower().replace("_", "-") != "storefleet" or wheel_version != version:
            raise ReleaseError("wrong_wheel", f"the wheel is {dist} {wheel_version}, the "
                                              f"rollout offers storefleet {version}")
        self.releases.mkdir(parents=True, exist_ok=True)
        # Per process: a pip orphaned by a kill of the agent may still be writing its own.
        partial = self.releases / f".{release}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=self.releases, prefix=".wheel-") as tmp:
            # pip takes a wheel only under its canonical file name; the cache names by sha.
            named = Path(tmp) / f"{dist.replace('-', '_')}-{wheel_version}-{tag}.whl"
            named.symlink_to(wheel.resolve())
            try:
                proc = subprocess.run(
                    [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                     "--disable-pip-version-check", "--no-warn-script-location",
                     "--target", str(partial), str(named)],
                    capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                shutil.rmtree(partial, ignore_errors=True)
                raise ReleaseError("unpack_failed", f"pip: {err}") from err
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ReleaseError("unpack_failed", f"pip exit {proc.returncode}: "
                                                f"{' | '.join(last)}")
        os.rename(partial, final)
        _sync_dir(self.releases)
        return final

    def prune(self, *, keep: set[str]) -> list[str]:
        """Remove every release but ``current``, ``previous`` and ``keep`` (partials too)."""
        if not self.releases.is_dir():
            return []
        keep = keep | {r for r in (self.current(), self.previous()) if r is not None}
        removed = []
        for entry in sorted(self.releases.iterdir()):
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

    # ---- the trial ---------------------------------------------------------------------

    def read_trial(self) -> Trial | None:
        """The trial, or None; a file that does not parse is moved aside (``.bad``) and
        read as none: the launcher must start an agent whatever it finds."""
        try:
            text = self.trial_path.read_text()
        except FileNotFoundError:
            return None
        try:
            return Trial.from_json(text)
        except (ValueError, TypeError, KeyError):
            os.replace(self.trial_path, self.trial_path.with_suffix(".bad"))
            return None

    def write_trial(self, trial: Trial) -> None:
        tmp = self.trial_path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            out.write(trial.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.trial_path)
        _sync_dir(self.root)

    def clear_trial(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.trial_path.unlink()

    def settle(self, *, now_ms: int) -> Trial | None:
        """The launcher's step, on every start: a trial whose release cannot stay up
        (more than ``max_starts`` starts) or is past its deadline is switched back to the
        release it came from; an install that stopped before its switch has failed."""
        trial = self.read_trial()
        if trial is not None and trial.state == "rolled_back" and self.current() != trial.from_:
            self.switch_back(trial.from_)  # stopped between recording and switching
        if trial is None or trial.state in OUTCOMES:
            return trial
        if trial.state == "unpacking" or self.current() != trial.to:
            trial.state = "failed"
            trial.detail = f"interrupted: the agent stopped before switching to {trial.to}"
            self.write_trial(trial)
            return trial
        trial.starts += 1
        reason = None
        if trial.starts > trial.max_starts:
            reason = f"{trial.to} did not report healthy in {trial.max_starts} starts"
        elif now_ms > trial.deadline_ms:
            reason = f"{trial.to} did not report healthy by the deadline"
        if reason is not None:
            trial.state, trial.detail = "rolled_back", f"rolled back: {reason}"
        self.write_trial(trial)  # recorded first: a stop before the switch redoes it
        if trial.state == "rolled_back":
            self.switch_back(trial.from_)
        return trial
