from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

from pneumo_lib import __version__, cli

#: The console script installed beside the interpreter running the tests.
PNEUMO = str(Path(sys.executable).parent / "pneumo")


def test_version_and_help_from_the_installed_entry_point():
    out = subprocess.run([PNEUMO, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pneumo_lib {__version__}"
    out = subprocess.run([PNEUMO, "--help"], capture_output=True, text=True, check=True)
    assert "book" in out.stdout and "info" in out.stdout


def test_module_entry_point_matches(capsys):
    out = subprocess.run([sys.executable, "-m", "pneumo_lib.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"pneumo_lib {__version__}"


def test_info_json_reports_profiles_and_folders(pneumo_home, capsys):
    assert cli.main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["profiles"]) == {"quick", "full"}
    assert report["data"]["phantom"].startswith(str(pneumo_home.resolve()))
    assert report["versions"]["pneumo_lib"] == __version__


def test_library_errors_become_one_line_and_exit_2(capsys):
    assert cli.main(["book", "run", "--profile", "slow", "--root", "."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pneumo: error: Unknown profile 'slow'")
    assert "Traceback" not in err
