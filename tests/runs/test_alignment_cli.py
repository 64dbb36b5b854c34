"""`autopilot align RUN [--llm] [--json]` through the real console script, on a real repository."""

from __future__ import annotations

import pytest

from runs.models import ExecutionRun
from tests.cli.shell import Shell
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory
from tests.runs.test_alignment import branch_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sh(subprocess_env, tmp_path) -> Shell:
    return Shell(subprocess_env, tmp_path)


def test_align_prints_the_verdict_and_stores_it(sh):
    project = ProjectFactory()
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "yarn.lock": "x\n"})

    data = sh.json("align", str(run.pk))
    assert data["run"] == run.pk and data["verdict"] == "block"
    text = sh("align", f"#{run.pk}").stdout
    assert text.startswith(f"run #{run.pk}: BLOCK")
    assert "[block] 1 file(s) a lockfile the task does not mention: yarn.lock" in text
    assert "[warn] Code changed (1 file(s)) but no test was added or changed." in text
    assert ExecutionRun.objects.get(pk=run.pk).alignment["verdict"] == "block"


def test_align_errors_are_one_clear_line(sh):
    project = ProjectFactory()
    queued = ExecutionRunFactory(project=project, status=ExecutionRun.Status.QUEUED)
    result = sh("align", str(queued.pk), ok=False)
    assert result.returncode == 2 and "nothing to check" in result.stderr and "Traceback" not in result.stderr

    missing = sh("align", "999999", ok=False)
    assert missing.returncode == 2 and "No run '999999'" in missing.stderr

    viewer = MembershipFactory(project=project, role="viewer").user
    refused = sh("align", str(queued.pk), "--user", viewer.username, ok=False)
    assert refused.returncode == 2 and "operator role" in refused.stderr
