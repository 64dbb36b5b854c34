"""The merge queue on real git: strategies, tests as the gate, conflicts, reactions, order, remote."""

from __future__ import annotations

import pytest

from autopilot.errors import Conflict, NotFound, PermissionDenied
from autopilot.models import Event, Project
from autopilot.state import transition
from blueprints.models import Task
from runs import integration, workspace
from runs.models import Integration
from tests.factories import MembershipFactory, TaskDependencyFactory
from tests.gitrepo import git
from tests.integration.conftest import branch_head, commit_files, first_parents, queued, show

pytestmark = pytest.mark.django_db

OWNER = "test-host:1:merge"


def settings_of(project, **values) -> Project:
    Project.objects.filter(pk=project.pk).update(**values)
    project.refresh_from_db()
    return project


def test_merge_commits_bring_each_task_in_after_its_tests_pass(project):
    # Given a project whose integration tests check both files once they exist
    settings_of(project, test_command="test -f README.md && echo integration-tests-ran")
    base = workspace.base_commit_of(project)
    first, task_a, run_a = queued(project, {"a.py": "A = 1\n"})
    second, task_b, _ = queued(project, {"b.py": "B = 2\n"})
    # When the queue is processed twice
    merged_a = integration.process_queue(project.pk, owner=OWNER)
    merged_b = integration.process_queue(project.pk, owner=OWNER)
    # Then both merged, in queue order, each onto the previous head, after their tests passed
    assert (merged_a.pk, merged_b.pk) == (first.pk, second.pk)
    assert merged_a.status == merged_b.status == Integration.Status.MERGED
    assert merged_a.onto_commit == base and merged_b.onto_commit == merged_a.merge_commit
    assert merged_a.tests_passed is True and "integration-tests-ran" in merged_a.test_output
    assert merged_a.head_commit == run_a.head_commit and merged_a.strategy == "merge"
    assert merged_a.diff_summary["files"] == [{"path": "a.py", "added": 1, "removed": 0}]
    head = branch_head(project)
    assert head == merged_b.merge_commit
    assert show(project, head, "a.py") == "A = 1\n" and show(project, head, "b.py") == "B = 2\n"
    # merge commits: two parents, the first the previous integration head
    assert git(project.repo_path, "rev-list", "--parents", "-n1", head).split()[1] == merged_a.merge_commit
    # the tasks are done; the base branch never moved; nothing is left to take
    for task in (task_a, task_b):
        task.refresh_from_db()
        assert task.status == Task.Status.DONE and task.completed_at is not None
    assert workspace.base_commit_of(project) == base
    assert integration.process_queue(project.pk, owner=OWNER) is None
    statuses = list(
        Event.objects.filter(kind="integration.status", subject_id=first.pk)
        .order_by("pk")
        .values_list("data", flat=True)
    )
    assert [s["to"] for s in statuses] == ["merging", "testing", "merged"]


@pytest.mark.parametrize("strategy", ["squash", "rebase"])
def test_squash_and_rebase_keep_the_integration_history_linear(project, strategy):
    settings_of(project, merge_strategy=strategy)
    base = workspace.base_commit_of(project)
    first, _, run_a = queued(project, {"a.py": "A = 1\n"})
    # the second task's branch has two commits and started before the first merged (a real rebase)
    second, task_b, run_b = queued(project, {"b.py": "B = 2\n"}, start=base)
    commit_files(project.repo_path, run_b.branch, {"b2.py": "B2\n"}, start=run_b.branch)
    for _ in range(2):
        assert integration.process_queue(project.pk, owner=OWNER).status == Integration.Status.MERGED
    history = first_parents(project)
    # linear: every commit has one parent; squash adds one commit per task, rebase replays each commit
    assert all(
        len(git(project.repo_path, "rev-list", "--parents", "-n1", c).split()) == 2 for c in history[:-1]
    )
    assert len(history) == 1 + (2 if strategy == "squash" else 3)
    assert history[-1] == base
    head = branch_head(project)
    assert show(project, head, "b2.py") == "B2\n" and show(project, head, "a.py") == "A = 1\n"
    # the task's own branch was not rewritten by the rebase
    assert workspace.ref_commit(project.repo_path, run_b.branch) != head


def test_a_merge_that_changes_nothing_is_merged_without_a_new_commit(project):
    head = workspace.integration_head(project)
    item, task, run = queued(project, {"README.md": "# Demo\n"})  # the same content: an empty commit
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.MERGED and done.merge_commit == head
    assert "no new commit" in done.status_reason
    assert branch_head(project) == head
    task.refresh_from_db()
    assert task.status == Task.Status.DONE


def test_failing_integration_tests_never_move_the_branch_and_send_the_task_back(project):
    settings_of(project, test_command="echo 'FAILED test_sum: expected 3' && exit 1", max_attempts=2)
    head = workspace.integration_head(project)
    item, task, _ = queued(project, {"a.py": "broken\n"})
    Task.objects.filter(pk=task.pk).update(attempts=1)
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.TESTS_FAILED and done.tests_passed is False
    assert "FAILED test_sum: expected 3" in done.test_output
    assert branch_head(project) == head
    task.refresh_from_db()
    assert task.status == Task.Status.READY
    reaction = Event.objects.get(kind="integration.reaction", subject_id=task.pk)
    assert reaction.data["cause"] == "tests_failed" and reaction.data["action"] == "rework"
    # When it fails again with no attempts left, the task is blocked with the reason
    Task.objects.filter(pk=task.pk).update(status=Task.Status.INTEGRATING, attempts=2)
    integration.retry(done, actor=None)
    again = integration.process_queue(project.pk, owner=OWNER)
    task.refresh_from_db()
    assert again.status == Integration.Status.TESTS_FAILED and again.attempt == 2
    assert task.status == Task.Status.BLOCKED
    assert Event.objects.filter(kind="integration.reaction", data__action="blocked").exists()


def conflicting_pair(project):
    base = workspace.integration_head(project)
    first, _, _ = queued(project, {"README.md": "# Demo\nintegrated line\n"}, start=base)
    second, task, run = queued(project, {"README.md": "# Demo\ntask line\n"}, start=base)
    assert integration.process_queue(project.pk, owner=OWNER).status == Integration.Status.MERGED
    return second, task, run


def test_a_conflict_stores_both_sides_and_sends_the_task_back_to_its_agent(project):
    second, task, _ = conflicting_pair(project)
    head = branch_head(project)
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.pk == second.pk and done.status == Integration.Status.CONFLICT
    assert done.conflict_files == ["README.md"] and "README.md" in done.status_reason
    assert "integrated line" in done.conflict_detail and "task line" in done.conflict_detail
    assert done.conflict_detail.index("integrated line") < done.conflict_detail.index("task line")
    assert branch_head(project) == head
    task.refresh_from_db()
    assert task.status == Task.Status.READY
    assert Event.objects.get(kind="integration.reaction", subject_id=task.pk).data["cause"] == "conflict"
    # the private worktree is clean again (no markers left for the next merge)
    assert not workspace.changed(integration.worktree_path(project))


def test_with_the_human_policy_a_conflict_waits_until_resolved(project, operator):
    settings_of(project, conflict_policy="human")
    second, task, run = conflicting_pair(project)
    done = integration.process_queue(project.pk, owner=OWNER)
    task.refresh_from_db()
    assert done.status == Integration.Status.CONFLICT and task.status == Task.Status.INTEGRATING
    assert (
        Event.objects.get(kind="integration.reaction", subject_id=task.pk).data["action"] == "wait_for_human"
    )
    assert integration.process_queue(project.pk, owner=OWNER) is None  # nothing queued meanwhile
    # When a human fixes the branch (merges the integration head, keeping both lines) and resolves it
    commit_files(
        project.repo_path,
        run.branch,
        {"README.md": "# Demo\nintegrated line\ntask line\n"},
        start=run.branch,
    )
    fixed = workspace.ref_commit(project.repo_path, run.branch)
    git(project.repo_path, "update-ref", f"refs/heads/{run.branch}", commit_merge(project, fixed))
    integration.resolve(done, actor=operator)
    done.refresh_from_db()
    assert done.status == Integration.Status.QUEUED and done.attempt == 2 and done.conflict_files == []
    merged = integration.process_queue(project.pk, owner=OWNER)
    assert merged.status == Integration.Status.MERGED
    assert show(project, branch_head(project), "README.md") == "# Demo\nintegrated line\ntask line\n"


def commit_merge(project, fixed: str) -> str:
    """A merge commit of the integration head and `fixed` whose tree is `fixed`'s (the human's fix)."""
    tree = git(project.repo_path, "rev-parse", f"{fixed}^{{tree}}")
    return git(
        project.repo_path,
        "commit-tree",
        tree,
        "-p",
        fixed,
        "-p",
        branch_head(project),
        "-m",
        "merge integration",
    )


def test_prerequisites_merge_before_their_dependents(project):
    dependent_item, dependent, _ = queued(project, {"b.py": "B\n"})
    prerequisite_item, prerequisite, _ = queued(project, {"a.py": "A\n"})
    TaskDependencyFactory(task=dependent, depends_on=prerequisite)
    assert integration.process_queue(project.pk, owner=OWNER).pk == prerequisite_item.pk
    assert integration.process_queue(project.pk, owner=OWNER).pk == dependent_item.pk


def test_a_deleted_task_branch_is_a_clear_failure(project):
    item, task, run = queued(project, {"a.py": "A\n"})
    git(project.repo_path, "branch", "-D", run.branch)
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.CONFLICT
    assert done.status_reason == f"the task's branch {run.branch} no longer exists"
    task.refresh_from_db()
    assert task.status == Task.Status.READY


def test_a_paused_project_merges_nothing(project):
    queued(project, {"a.py": "A\n"})
    settings_of(project, paused=True)
    assert integration.process_queue(project.pk, owner=OWNER) is None
    assert integration.pending_projects() == []


def test_skip_blocks_the_task_and_needs_a_reason(project, operator, viewer):
    item, task, _ = queued(project, {"a.py": "A\n"})
    with pytest.raises(PermissionDenied):
        integration.skip(item, actor=viewer, reason="not now")
    with pytest.raises(Exception, match="needs a reason"):
        integration.skip(item, actor=operator, reason="  ")
    integration.skip(item, actor=operator, reason="superseded by #9")
    item.refresh_from_db()
    task.refresh_from_db()
    assert item.status == Integration.Status.SKIPPED and "superseded by #9" in item.status_reason
    assert task.status == Task.Status.BLOCKED
    with pytest.raises(Conflict):
        integration.skip(item, actor=operator, reason="again")
    with pytest.raises(Conflict, match="only a conflict or failed tests"):
        integration.retry(item, actor=operator)


def test_human_actions_check_the_operator_role(project, viewer, user):
    item, _, _ = queued(project, {"a.py": "A\n"})
    with pytest.raises(PermissionDenied):
        integration.retry(item, actor=viewer)
    with pytest.raises(NotFound):
        integration.resolve(item, actor=user)  # not a member
    owner = MembershipFactory(project=project, role="owner").user
    with pytest.raises(Conflict, match="only a conflict can be resolved"):
        integration.resolve(item, actor=owner)


def test_enqueue_is_idempotent_and_refuses_milestones(project):
    item, task, run = queued(project, {"a.py": "A\n"})
    assert integration.enqueue(task, run).pk == item.pk
    milestone = Task.objects.create(project=project, title="M1", kind=Task.Kind.MILESTONE)
    with pytest.raises(Exception, match="milestone"):
        integration.enqueue(milestone, run)


def test_after_a_merge_the_integration_branch_is_pushed_to_the_remote(project, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    settings_of(project, integration_remote=str(remote), push_task_branches=True)
    item, _, run = queued(project, {"a.py": "A\n"})
    done = integration.process_queue(project.pk, owner=OWNER)
    assert git(remote, "rev-parse", "refs/heads/autopilot/integration") == done.merge_commit
    assert git(remote, "rev-parse", f"refs/heads/{run.branch}") == run.head_commit
    assert Event.objects.filter(kind="integration.pushed", subject_id=item.pk).exists()


def test_a_failed_push_is_an_event_not_a_merge_failure(project, tmp_path):
    settings_of(project, integration_remote=str(tmp_path / "missing.git"))
    item, task, _ = queued(project, {"a.py": "A\n"})
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.MERGED
    failure = Event.objects.get(kind="integration.push_failed", subject_id=item.pk)
    assert "missing.git" in failure.data["output"]


def test_a_task_leaving_the_queue_takes_its_queued_merge_with_it(project):
    item, task, _ = queued(project, {"a.py": "A\n"})
    transition(task, Task.Status.CANCELLED, reason="no longer wanted")
    item.refresh_from_db()
    assert (
        item.status == Integration.Status.CANCELLED
        and "moved from integrating to cancelled" in item.status_reason
    )
    assert integration.process_queue(project.pk, owner=OWNER) is None
