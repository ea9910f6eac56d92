"""The CLI skeleton: every sub-command has --help; errors are one line with the right exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lora_ext import cli
from lora_ext.errors import ConfigError


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m lora_ext " + command in capsys.readouterr().out


def test_usage_error_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["frobnicate"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error:")


def test_typed_error_becomes_one_line_without_traceback(monkeypatch, capsys):
    from lora_ext.commands import inspect

    def fail(args):
        raise ConfigError("rank must be positive", hint="use --rank 16")

    monkeypatch.setattr(inspect, "run", fail)
    assert cli.main(["inspect", "x.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err == "error: rank must be positive (use --rank 16)\n"


def test_unexpected_error_is_one_line_unless_debug(monkeypatch, capsys):
    from lora_ext.commands import inspect

    monkeypatch.setattr(inspect, "run", lambda args: 1 / 0)
    assert cli.main(["inspect", "x"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert cli.main(["--debug", "inspect", "x"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "lora_ext", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in cli.COMMANDS:
        assert command in result.stdout


def test_a_busy_port_is_one_line_naming_the_option_before_any_model_loads(capsys) -> None:
    import socket

    from lora_ext.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["ui", "--model", "/nonexistent/model", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: port {port} is busy: use --port N (make run PORT=N)"), err
    assert len(err) == 1 and "GRADIO_SERVER_PORT" not in err[0]
