"""The typer app mounted as ``storefleet cloud``."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from cloud.cli import app
from cloud.settings import CloudSettings


def test_commands_and_options_are_there() -> None:
    runner = CliRunner()
    serve = runner.invoke(app, ["serve", "--help"])
    assert serve.exit_code == 0
    for option in ("--host", "--port", "--db", "--mqtt", "--ingest", "--no-ingest"):
        assert option in serve.output
    ingest = runner.invoke(app, ["ingest", "--help"])
    assert ingest.exit_code == 0
    for option in ("--db", "--mqtt", "--client-id", "--share-group", "--no-share"):
        assert option in ingest.output


def test_bad_settings_exit_2_with_a_message() -> None:
    result = CliRunner().invoke(app, ["ingest", "--mqtt", "http://nope"],
                                env={"STOREFLEET_API_TOKENS": ""})
    assert result.exit_code == 2
    assert "invalid settings" in result.output


def test_serve_refuses_to_start_without_its_keys_unless_dev(tmp_path: Path) -> None:
    env = {"STOREFLEET_API_TOKENS": "tok-abcdefghijkl:hq-admin", "STOREFLEET_SIGNING_KEY_FILE": "",
           "STOREFLEET_MEMBER_HASH_KEY": "", "STOREFLEET_MEMBER_HASH_KEY_FILE": ""}
    result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                                env=env)
    assert result.exit_code == 2
    assert "STOREFLEET_SIGNING_KEY_FILE" in result.output
    assert "STOREFLEET_MEMBER_HASH_KEY" in result.output
    assert "secrets init" in result.output


def test_secrets_init_makes_each_secret_once(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    first = CliRunner().invoke(app, ["secrets", "init", str(target)])
    assert first.exit_code == 0, first.output
    files = {p.name: p.read_bytes() for p in target.iterdir()}
    assert set(files) == {"signing-key.pem", "release-key.pem", "member-hash.key",
                          "hq-admin.token", "api-tokens", "mqtt-cloud.secret",
                          "broker-admin.secret", "cloud.env"}
    assert all(not (target / name).stat().st_mode & 0o077 for name in files)
    second = CliRunner().invoke(app, ["secrets", "init", str(target)])
    assert second.exit_code == 0 and "created" not in second.output
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files  # nothing replaced
    token = files["hq-admin.token"].decode().strip()
    assert files["api-tokens"].decode() == f"{token}:hq-admin\n"
    env = dict(line.split("=", 1) for line in files["cloud.env"].decode().splitlines())
    settings = CloudSettings.from_env(env)  # what `set -a; . cloud.env` gives the services
    assert settings.signing_key_file == str((target / "signing-key.pem").resolve())
    assert settings.release_key_file == str((target / "release-key.pem").resolve())
    assert files["release-key.pem"] != files["signing-key.pem"]  # two keys, two purposes
    assert settings.member_hash_key is not None and settings.api_tokens[token].role == "hq-admin"
    assert settings.mqtt_username == "storefleet-cloud" and settings.mqtt_password
    assert settings.enrolment.required  # production takes births of enrolled stores only


def test_ingest_says_when_its_metrics_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["ingest", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                                          "--metrics-port", str(port)],
                                    env={"STOREFLEET_API_TOKENS": ""})
    assert result.exit_code == 2
    assert f"port {port}" in result.output and "--metrics-port" in result.output
