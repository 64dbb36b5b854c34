"""Reviews of delivered work: approve → merge queue; request changes → a follow-up run on the task's
branch; reject → to-do (or cancelled); who may review, and what can be reviewed."""

from __future__ import annotations

import pytest

from autopilot.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from autopilot.models import Event, Project
from blueprints.models import Task
from runs import integration, workspace
from runs.models import ExecutionRun, Integration, TaskReview
from tests.factories import MembershipFactory
from tests.integration.conftest import delivered, queued

pytestmark = pytest.mark.django_db
OWNER = "test-host:1:review"


def in_review(project, files=None):
    task, run = delivered(project, files=files or {"a.py": "A\n"})
    Task.objects.filter(pk=task.pk).update(status=Task.Status.REVIEW, attempts=1)
    task.refresh_from_db()
    return task, run


def test_approving_queues_the_work_and_the_merge_makes_it_done(project, operator):
    task, run = in_review(project)
    review = integration.review(task, actor=operator, decision="approved", comment="looks right")
    assert (review.decision, review.run_id, review.author_id) == ("approved", run.pk, operator.pk)
    task.refresh_from_db()
    item = Integration.objects.get(task=task)
    assert task.status == Task.Status.INTEGRATING and item.status == "queued" and item.branch == run.branch
    assert Event.objects.filter(kind="task.reviewed", subject_id=task.pk, data__decision="approved").exists()
    assert integration.process_queue(project.pk, owner=OWNER).status == Integration.Status.MERGED
    task.refresh_from_db()
    assert task.status == Task.Status.DONE


def test_requesting_changes_needs_a_comment_and_starts_a_follow_up_run(project, operator):
    task, run = in_review(project)
    with pytest.raises(ApplicationError, match="needs a comment"):
        integration.review(task, actor=operator, decision="changes_requested", comment="  ")
    assert not TaskReview.objects.exists()
    integration.review(
        task,
        actor=operator,
        decision="changes_requested",
        comment="Handle empty input",
        enqueue_follow_up=False,
    )
    task.refresh_from_db()
    follow_up = ExecutionRun.objects.exclude(pk=run.pk).get(task=task)
    assert task.status == Task.Status.READY
    assert (follow_up.status, follow_up.retry_of_id, follow_up.attempt, follow_up.role) == (
        "queued",
        run.pk,
        run.attempt + 1,
        "code",
    )
    assert TaskReview.objects.get(task=task).comment == "Handle empty input"
    reaction = Event.objects.get(kind="integration.reaction", subject_id=task.pk)
    assert reaction.data["cause"] == "changes_requested" and reaction.data["action"] == "rework"


def test_requesting_changes_with_no_attempts_left_blocks_the_task(project, operator):
    Project.objects.filter(pk=project.pk).update(max_attempts=1)
    task, run = in_review(project)
    integration.review(
        task, actor=operator, decision="changes_requested", comment="again", enqueue_follow_up=False
    )
    task.refresh_from_db()
    assert task.status == Task.Status.BLOCKED
    assert not ExecutionRun.objects.exclude(pk=run.pk).filter(task=task).exists()


@pytest.mark.parametrize(("cancel", "expected"), [(False, Task.Status.TODO), (True, Task.Status.CANCELLED)])
def test_rejecting_sends_the_task_back_or_cancels_it(project, operator, cancel, expected):
    task, _ = in_review(project)
    integration.review(task, actor=operator, decision="rejected", cancel=cancel)
    task.refresh_from_db()
    assert task.status == expected and not Integration.objects.filter(task=task).exists()


def test_a_conflict_waiting_for_a_human_can_be_reviewed(project, operator):
    # Given a conflict with the human policy: the task waits in integrating with the failed merge
    Project.objects.filter(pk=project.pk).update(conflict_policy="human")
    base = workspace.integration_head(project)
    queued(project, {"README.md": "# Demo\nfirst\n"}, start=base)
    item, task, run = queued(project, {"README.md": "# Demo\nsecond\n"}, start=base)
    integration.process_queue(project.pk, owner=OWNER)
    assert integration.process_queue(project.pk, owner=OWNER).status == Integration.Status.CONFLICT
    task.refresh_from_db()
    assert task.status == Task.Status.INTEGRATING
    # When the reviewer asks for changes, a follow-up run continues the branch
    integration.review(task, actor=operator, decision="changes_requested", comment="keep both lines")
    task.refresh_from_db()
    assert task.status == Task.Status.READY
    assert ExecutionRun.objects.filter(task=task, retry_of=run, status="queued").exists()
    # and a task that merely went back for rework cannot be reviewed
    with pytest.raises(Conflict, match="only a task in review"):
        integration.review(task, actor=operator, decision="approved")


def test_who_may_review_and_what(project, viewer, user, operator):
    task, _ = in_review(project)
    with pytest.raises(PermissionDenied):
        integration.review(task, actor=viewer, decision="approved")
    with pytest.raises(NotFound):
        integration.review(task, actor=user, decision="approved")
    with pytest.raises(ApplicationError, match="Unknown review decision 'maybe'"):
        integration.review(task, actor=operator, decision="maybe")
    with pytest.raises(ApplicationError, match="at most"):
        integration.review(task, actor=operator, decision="rejected", comment="x" * 20_001)
    owner = MembershipFactory(project=project, role="owner").user
    integration.review(task, actor=owner, decision="approved")
    with pytest.raises(Conflict, match="is integrating"):
        integration.review(task, actor=owner, decision="approved")
    assert TaskReview.objects.count() == 1
