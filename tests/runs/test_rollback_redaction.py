"""Step and run rollback (byte-exact), and secret redaction in prompt, output, files and diffs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from runs import services
from runs.models import ExecutionRun
from runs.redaction import Redactor, env_file_values, redact
from tests.factories import ProjectFactory
from tests.gitrepo import git, make_repo
from tests.runs.helpers import run_now

pytestmark = pytest.mark.django_db(transaction=True)

BINARYISH = "caf\u00e9 \u2603\r\nno newline at end"


def test_step_rollback_restores_previous_bytes_exactly(project):
    # given a file with awkward bytes, then a run that edits it and creates another
    repo = Path(project.repo_path)
    original = (repo / "README.md").read_bytes()
    run = run_now(
        project,
        [
            {"edit": "README.md", "old": "# Demo", "new": "# Changed"},
            {"write": "new.txt", "content": BINARYISH},
            {"finish": "ok"},
        ],
    )
    edit, write = run.steps.filter(kind__in=["edit_file", "write_file"]).order_by("seq")
    assert base64.b64decode(edit.rollback["before_b64"]) == original
    assert "-# Demo\n+# Changed" in edit.diff

    # when the steps are rolled back (newest first)
    services.step_rollback(step=write)
    result = services.step_rollback(step=edit)

    # then the worktree file is byte-identical to before, the created file is gone, and the branch says so
    worktree = Path(run.worktree_path)
    assert (worktree / "README.md").read_bytes() == original
    assert not (worktree / "new.txt").exists()
    assert result["verified"] is True
    assert git(project.repo_path, "show", f"{run.branch}:README.md") == original.decode().rstrip("\n")
    edit.refresh_from_db()
    assert edit.status == "rolled_back"


def test_step_rollback_refuses_when_a_later_step_changed_the_same_file(project):
    run = run_now(
        project, [{"write": "f.txt", "content": "1"}, {"write": "f.txt", "content": "2"}, {"finish": "ok"}]
    )
    first = run.steps.filter(kind="write_file").order_by("seq").first()
    with pytest.raises(Exception, match="changed f.txt later"):
        services.step_rollback(step=first)


def test_run_rollback_returns_the_worktree_to_the_base_commit_byte_for_byte(project):
    # given a run that changed, added and deleted files
    project.command_allowlist = ["rm"]
    project.save()
    run = run_now(
        project,
        [
            {"write": "README.md", "content": "changed\n"},
            {"write": "dir/new.bin", "content": BINARYISH},
            {"run": "rm README.md"},
            {"finish": "ok"},
        ],
    )
    assert run.head_commit != run.base_commit

    # when the whole run is rolled back
    result = services.run_rollback(run=run)

    # then every file matches the base commit byte for byte and the branch points at it again
    run.refresh_from_db()
    worktree = Path(run.worktree_path)
    assert result["verified"] and result["previous_head"]
    assert (worktree / "README.md").read_bytes() == git(
        project.repo_path, "show", f"{run.base_commit}:README.md"
    ).encode() + b"\n"
    assert not (worktree / "dir").exists()
    assert git(worktree, "rev-parse", "HEAD") == run.base_commit == run.head_commit
    assert git(worktree, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(project.repo_path, "rev-parse", "main") == run.base_commit


def test_rollback_of_an_active_run_is_refused(project):
    run = services.run_create(project=project, prompt="x", enqueue=False)
    with pytest.raises(Exception, match="stop it before rolling it back"):
        services.run_rollback(run=run)


def test_redaction_patterns():
    samples = {
        "anthropic": "key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
        "openai": "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "github": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "aws_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "slack": "xoxb-123456789012-abcdefghijkl",
        "bearer": "Authorization: Bearer abc.def.ghi123456",
        "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "url_password": "postgres://admin:hunter2secret@db.example.com/app",
    }
    secrets = [
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
        "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "xoxb-123456789012-abcdefghijkl",
        "abc.def.ghi123456",
        "MIIEow",
        "hunter2secret",
    ]
    for text, secret in zip(samples.values(), secrets, strict=True):
        assert secret not in redact(text), text
    assert "db.example.com" in redact(samples["url_password"])
    assert redact("nothing to see here: sk-short") == "nothing to see here: sk-short"


def test_env_file_values_are_read_and_redacted(tmp_path):
    (tmp_path / ".env").write_text(
        'DB_PASSWORD="correct-horse-battery"\nDEBUG=1\n# COMMENT=xyzxyzxyz\nexport TOKEN=tok_123456789\n'
    )
    values = env_file_values(tmp_path)
    assert values == {"correct-horse-battery", "tok_123456789"}
    assert (
        Redactor(values)("pw correct-horse-battery and tok_123456789")
        == "pw [REDACTED:env_value] and [REDACTED:env_value]"
    )


def test_planted_secrets_never_reach_the_database(tmp_path, settings):
    # given a repository whose .env holds a secret, and a prompt and a file carrying known key shapes
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n", ".gitignore": ".env\n"})
    (repo / ".env").write_text("SERVICE_TOKEN=planted-env-secret-123\n")
    project = ProjectFactory(repo_path=str(repo), autonomy_mode="full_auto", command_allowlist=["cat"])
    openai_key = "sk-proj-PLANTEDplantedPLANTED123456"
    run = run_now(
        project,
        [
            {"write": "config.py", "content": f"KEY = '{openai_key}'\nTOKEN = 'planted-env-secret-123'\n"},
            {"run": "cat config.py"},
            {"finish": f"used {openai_key}"},
        ],
        prompt=f"use key {openai_key} and ghp_PLANTEDplantedPLANTEDplanted1234",
    )

    # then nothing persisted contains them: run prompt, steps' input/output/diff, summary, events
    run.refresh_from_db()
    stored = [run.prompt, run.result_summary, run.status_reason]
    for step in run.steps.all():
        stored += [str(step.input), step.output, step.diff]
    stored += [str(e.data) for e in run.project.events.all()]
    blob = "\n".join(stored)
    assert openai_key not in blob
    assert "planted-env-secret-123" not in blob
    assert "ghp_PLANTED" not in blob
    assert "[REDACTED:openai_key]" in blob and "[REDACTED:env_value]" in blob
    assert ExecutionRun.objects.get(pk=run.pk).status == "succeeded"
