"""The CI user's workflow (.github/workflows/book.yml): valid against GitHub's workflow schema,
free of the security problems zizmor knows, and running exactly the README's two commands
(which the rest of the suite tests). Both checkers work offline: the schema ships in the
check-jsonschema wheel, zizmor runs with --offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
BIN = Path(sys.executable).parent


def _schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)


def _zizmor(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "zizmor"), "--offline", "--persona", "auditor", "--no-progress", str(path)],
                          capture_output=True, text=True)


def test_workflow_matches_githubs_schema_and_the_check_can_fail(tmp_path):
    ok = _schema(WORKFLOW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:", 1))  # a planted typo
    got = _schema(bad)
    assert got.returncode != 0 and "run-on" in got.stdout + got.stderr


def test_workflow_has_no_zizmor_findings_and_the_lint_can_fail(tmp_path):
    ok = _zizmor(WORKFLOW)
    assert ok.returncode == 0 and "No findings" in ok.stdout + ok.stderr, ok.stdout + ok.stderr
    d = tmp_path / ".github" / "workflows"
    d.mkdir(parents=True)
    bad = d / "bad.yml"
    bad.write_text(re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v4", WORKFLOW.read_text()))
    got = _zizmor(bad)
    assert got.returncode != 0 and "unpinned" in got.stdout + got.stderr


def test_workflow_runs_the_readme_commands_and_publishes_the_built_book():
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    commands = [s["run"].strip() for s in steps if "run" in s]
    assert commands == ["bash run.sh", "bash run.sh test"]
    readme = (ROOT / "README.md").read_text()
    assert all(re.search(rf"^{re.escape(c)}\s+#", readme, re.M) for c in commands)
    upload = next(s for s in steps if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert "_build/html" in (ROOT / "run.sh").read_text()  # where the main command builds the book


@pytest.mark.parametrize("tool", ["check-jsonschema", "zizmor"])
def test_the_checkers_are_pinned_in_the_environment(tool):
    assert re.search(rf"^{tool}==", (ROOT / "requirements.lock").read_text(), re.M)
