"""The command lines start fast: importing them, and every ``--help`` under them, loads
none of the agent, the cloud, the models or the network clients (issue 11).

Timing is measured by ``bench/cli_startup.py``, not here; these tests fail when an eager
import comes back, which is what made ``storefleet --help`` take 4 s.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import storefleet
from storefleet import cli as storefleet_cli
from storefleet import demo as storefleet_demo

BIN = Path(sys.executable).parent

# What the commands load when they run, and --help must not.
HEAVY = [
    "fastapi", "sqlalchemy", "alembic", "uvicorn", "onnxruntime", "cv2", "numpy",
    "amqtt", "aiomqtt", "paho", "httpx", "escpos", "prometheus_client",
    "edge_agent.app", "edge_agent.drivers", "edge_agent.inference.positioning.model",
    "cloud.main", "cloud.settings", "cloud.ingest", "firmware_sim.store",
    "firmware_sim.audio.unit", "firmware_sim.esl.ap", "firmware_sim.printer.sim",
    "storefleet.demo", "fleet.client", "protocols.codec", "protocols.messages",
]

# In a fresh interpreter: every group and command of both CLIs, `--help` each, in-process,
# and after each the heavy modules that are loaded by then.
_EVERY_HELP = """
import json, sys
from typer.main import get_command
from typer.testing import CliRunner

from fleet.cli import app as fleet_app
from storefleet.cli import app as storefleet_app

HEAVY = json.loads(sys.argv[1])
loaded_by_import = sorted(m for m in HEAVY if m in sys.modules)

def paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, (*prefix, name))

runner = CliRunner()
helps = []
for prog, app in (("storefleet", storefleet_app), ("fleet", fleet_app)):
    for path in paths(get_command(app)):
        result = runner.invoke(app, [*path, "--help"], prog_name=prog)
        helps.append({"argv": [prog, *path, "--help"], "exit": result.exit_code,
                      "usage": "Usage:" in result.output,
                      "heavy": sorted(m for m in HEAVY if m in sys.modules)})
print(json.dumps({"import": loaded_by_import, "helps": helps}))
"""


def _every_help() -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _EVERY_HELP, json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_clis_loads_nothing_heavy() -> None:
    code = ("import json, sys; import storefleet.cli, fleet.cli; "
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = set(json.loads(proc.stdout))
    assert {"storefleet.cli", "cloud.cli", "edge_agent.cli", "firmware_sim.cli",
            "edge_agent.inference.positioning.cli", "fleet.cli"} <= loaded
    eager = sorted(m for m in HEAVY if m in loaded)
    assert eager == [], f"imported by the CLI modules at start-up: {eager}"


def test_every_help_loads_nothing_heavy() -> None:
    result = _every_help()
    assert result["import"] == []
    helps = result["helps"]
    argvs = [" ".join(h["argv"]) for h in helps]
    # the whole tree was walked, nested groups included
    for expected in ("storefleet --help", "storefleet demo --help", "storefleet version --help",
                     "storefleet cloud serve --help", "storefleet edge run --help",
                     "storefleet sim printer --help", "storefleet sim esl --help",
                     "storefleet sim audio --help", "storefleet positioning train --help",
                     "storefleet bench cli --help", "fleet --help", "fleet cmd --help"):
        assert expected in argvs
    failed = [h["argv"] for h in helps if h["exit"] != 0 or not h["usage"]]
    assert failed == []
    eager = {" ".join(h["argv"]): h["heavy"] for h in helps if h["heavy"]}
    assert eager == {}, f"--help loaded heavy modules: {eager}"


def _entry(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a console script (``.venv/bin/storefleet`` or ``fleet``) as a user would."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                          timeout=60, check=False, env={"COLUMNS": "120", "PATH": str(BIN)})


def test_entry_points_answer_help_and_version() -> None:
    top = _entry("storefleet", "--help")
    assert top.returncode == 0, top.stderr
    for group in ("demo", "cloud", "edge", "sim", "positioning", "bench", "version"):
        assert f" {group} " in top.stdout
    version = _entry("storefleet", "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == storefleet.__version__
    printer = _entry("storefleet", "sim", "printer", "--help")
    assert printer.returncode == 0, printer.stderr
    assert "Usage: storefleet sim printer" in printer.stdout
    assert "ESC/POS receipt printer" in printer.stdout and "--port" in printer.stdout
    serve = _entry("storefleet", "cloud", "serve", "--help")
    assert serve.returncode == 0 and "--ingest" in serve.stdout
    fleet = _entry("fleet", "--help")
    assert fleet.returncode == 0, fleet.stderr
    for command in ("stores", "devices", "cmd"):
        assert f" {command} " in fleet.stdout


def test_demo_command_forwards_every_option_to_the_demo() -> None:
    """``storefleet demo`` is declared in the CLI (so --help does not import the demo) and
    forwards to ``storefleet.demo.demo``, whose parameters are keyword-only with no
    defaults: an option added on one side and not the other fails here, not at run time."""
    cli = inspect.signature(storefleet_cli.demo).parameters
    run = inspect.signature(storefleet_demo.demo).parameters
    assert list(cli) == list(run)
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in run.values())
