"""``pneumo serve``: arguments, early and clear failures, the app notebook shipped in the wheel."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pneumo_lib import app, cli


def test_help_names_the_options_and_the_loopback_default():
    parser = cli.build_parser()
    args = parser.parse_args(["serve"])
    assert (args.model, args.port, args.host) == (None, app.DEFAULT_PORT, "127.0.0.1")
    args = parser.parse_args(["serve", "--model", "m.keras", "--port", "9000", "--host", "0.0.0.0"])
    assert (args.model, args.port, args.host) == ("m.keras", 9000, "0.0.0.0")


@pytest.mark.parametrize("argv, message", [
    (["--model", "nowhere/model.keras"], "--model nowhere/model.keras: no such file."),
    (["--port", "0"], "--port must be between 1 and 65535, got 0."),
    (["--port", "70000"], "--port must be between 1 and 65535, got 70000."),
])
def test_bad_arguments_fail_in_one_line(argv, message, capsys):
    assert cli.main(["serve", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"pneumo: error: {message}"


def test_a_model_that_is_not_a_keras_file_is_refused(tmp_path, capsys):
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"HDF")
    assert cli.main(["serve", "--model", str(weights)]) == 2
    assert "expected a Keras 3 '.keras' file, got '.h5'" in capsys.readouterr().err


def test_a_truncated_model_file_fails_the_command_not_the_page(tmp_path, capsys):
    model = tmp_path / "cut.keras"
    model.write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["serve", "--model", str(model), "--port", str(_free_port())]) == 2
    assert "is corrupted or truncated" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_busy_port_is_refused_before_anything_starts(tmp_path, capsys):
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--model", str(model), "--port", str(port)]) == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_voila_binds_where_asked_and_never_hops_ports():
    argv = app.voila_argv("127.0.0.1", 8123)
    assert argv[0] == str(app.APP_NOTEBOOK)
    assert {"--Voila.ip=127.0.0.1", "--port=8123", "--Voila.port_retries=0", "--no-browser"} <= set(argv)


def test_the_app_notebook_ships_in_the_wheel(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("pneumo_lib-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        shipped = json.loads(z.read("pneumo_lib/app/explorer_app.ipynb"))
    code = "".join("".join(c["source"]) for c in shipped["cells"] if c["cell_type"] == "code")
    assert "app_from_environment()" in code
    assert shipped == json.loads(app.APP_NOTEBOOK.read_text())
