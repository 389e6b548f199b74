"""The typer app mounted as ``storefleet cloud``."""

from __future__ import annotations

from typer.testing import CliRunner

from cloud.cli import app


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
