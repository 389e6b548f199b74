#!/usr/bin/env bash
# Run storefleet's whole test suite against real services, on a fresh machine.
#
# Installs what the tests need (Mosquitto, PostgreSQL, Prometheus, Python deps into .venv),
# then runs pytest. Real services are REQUIRED: a test that cannot start
# Mosquitto or PostgreSQL fails instead of skipping (STOREFLEET_REQUIRE_SERVICES=1).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k outbox`.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_apt=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v prometheus >/dev/null || need_apt+=(prometheus)
# the three-node broker cluster test (decision 0053): ~35 MB download, ~57 MB on disk
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
# headless Chromium for the cart-screen end-to-end test (Playwright drives it; its own
# browser download is not used)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
# a CJK font, so the cart screen's Chinese strings render as glyphs in screenshots
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_apt+=(fonts-wqy-microhei)
# systemd-analyze verifies the shipped unit (tests/edge_agent/test_selfupdate.py); systemd
# need not run (supervisord stands in for it there)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian packages start system-wide instances; the tests run their own on
# free loopback ports, so those are not needed (and not touched).

PY="${PYTHON:-python3}"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    PY=.venv/bin/python
fi
echo "== installing storefleet[test] into $("$PY" -c 'import sys; print(sys.prefix)')"
"$PY" -m pip install -q --upgrade pip >/dev/null
"$PY" -m pip install -q -e ".[test]"

export STOREFLEET_REQUIRE_SERVICES="${STOREFLEET_REQUIRE_SERVICES:-1}"
echo "== pytest (STOREFLEET_REQUIRE_SERVICES=$STOREFLEET_REQUIRE_SERVICES)"
# Two workers: most of the suite waits on brokers, databases and processes rather than
# the CPU. PYTEST_WORKERS=0 runs it in one process. Tests that need the README's fixed
# ports run in one worker (xdist group "fixed-ports").
exec "$PY" -m pytest -ra -n "${PYTEST_WORKERS:-2}" --dist loadgroup --durations=25 "$@"
