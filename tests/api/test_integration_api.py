"""The integration API (issue #11): the queue status, the merge history, retry / skip / resolve, a
task's review and PR body, and `from_ref` on run creation, over a real merge queue on real git.
Viewers read, operators act, non-members get a 404; bad input is a 400 (or a 409 for a state that
refuses) naming the problem, and nothing is written."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from blueprints.models import Task
from runs.models import ExecutionRun, Integration, TaskReview
from tests.gitrepo import git
from tests.runs.integration_doors import build_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def q():
    return build_queue()


def as_(q, who: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(q.users[who])
    return client


def test_status_shows_the_queue_the_waiting_conflict_recent_merges_and_the_branch(q):
    data = as_(q, "viewer").get(f"/api/projects/{q.project.pk}/integration/").json()
    assert data["integration_branch"] == "autopilot/integration" and data["review_required"] is False
    assert [(i["id"], i["position"]) for i in data["queue"]] == [(q.queued.pk, 1)]
    assert data["in_flight"] is None
    assert [i["id"] for i in data["recent"]] == [q.merged.pk]
    assert data["recent"][0]["merge_commit"] == q.merged.merge_commit
    [waiting] = data["waiting"]
    assert waiting["id"] == q.conflict.pk and waiting["conflict_files"] == ["calc.py"]
    assert "<<<<<<<" in waiting["conflict_detail"] or "calc.py" in waiting["conflict_detail"]
    head = data["head"]
    assert head["exists"] and head["ahead"] >= 1 and head["behind"] == 0
    assert head["integration_head"] == git(q.project.repo_path, "rev-parse", "autopilot/integration")
    assert [f["path"] for f in head["diff_stat"]["files"]] == ["calc.py"]
    assert data["counts"] == {"queued": 1, "in_flight": 0, "waiting": 1}


def test_history_is_filtered_and_paginated(q):
    client = as_(q, "viewer")
    url = f"/api/projects/{q.project.pk}/integrations/"
    page = client.get(url, {"limit": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert [i["id"] for i in client.get(url, {"status": "merged,conflict"}).json()["results"]] == [
        q.conflict.pk,
        q.merged.pk,
    ]
    assert [i["id"] for i in client.get(url, {"task": q.queued.task_id}).json()["results"]] == [q.queued.pk]
    for query, names in (
        ({"status": "merged,bogus"}, "Unknown status bogus"),
        ({"task": "abc"}, "task"),
        ({"task": "0"}, "task"),
        ({"offset": "-1"}, ""),
    ):
        answer = client.get(url, query)
        assert answer.status_code in (200, 400), answer.content
        if names:
            assert answer.status_code == 400 and names in answer.content.decode()
    detail = client.get(f"{url}{q.conflict.pk}/").json()
    assert detail["status"] == "conflict" and detail["task_title"] == "Sub"


def test_other_projects_and_strangers_see_nothing(q):
    other = build_queue()
    client = as_(q, "viewer")
    assert client.get(f"/api/projects/{q.project.pk}/integrations/{other.merged.pk}/").status_code == 404
    operator = as_(q, "operator")
    assert (
        operator.post(f"/api/projects/{q.project.pk}/integrations/{other.conflict.pk}/retry/").status_code
        == 404
    )
    other.conflict.refresh_from_db()
    assert other.conflict.status == "conflict"
    stranger = as_(q, "non-member")
    for url in (
        f"/api/projects/{q.project.pk}/integration/",
        f"/api/projects/{q.project.pk}/integrations/",
        f"/api/projects/{q.project.pk}/integrations/{q.merged.pk}/",
        f"/api/tasks/{q.review_task.pk}/pr_body/",
    ):
        answer = stranger.get(url)
        assert answer.status_code == 404 and q.project.name not in answer.content.decode(), url
    assert (
        stranger.post(f"/api/tasks/{q.review_task.pk}/review/", {"decision": "approved"}).status_code == 404
    )
    assert APIClient().get(f"/api/projects/{q.project.pk}/integration/").status_code in (401, 403)


def test_viewers_cannot_act(q):
    client = as_(q, "viewer")
    base = f"/api/projects/{q.project.pk}/integrations/{q.conflict.pk}/"
    for action in ("retry", "skip", "resolve"):
        answer = client.post(base + action + "/", {"reason": "no"}, format="json")
        assert answer.status_code == 403 and "operator role" in answer.json()["detail"]
    answer = client.post(f"/api/tasks/{q.review_task.pk}/review/", {"decision": "approved"}, format="json")
    assert answer.status_code == 403
    q.conflict.refresh_from_db()
    assert q.conflict.status == "conflict" and not TaskReview.objects.exists()


def test_retry_skip_resolve(q):
    client = as_(q, "operator")
    p = f"/api/projects/{q.project.pk}/integrations/"
    # A merged one cannot be retried, skipped or resolved: 409 naming the state.
    for action in ("retry", "resolve", "skip"):
        answer = client.post(f"{p}{q.merged.pk}/{action}/", {"reason": "r"}, format="json")
        assert answer.status_code == 409, (action, answer.content)
        assert "merged" in answer.json()["detail"]
    # Skip needs a reason.
    answer = client.post(f"{p}{q.queued.pk}/skip/", {}, format="json")
    assert answer.status_code == 400 and "reason" in answer.json()["detail"]
    answer = client.post(f"{p}{q.queued.pk}/skip/", {"reason": "x" * 10_000}, format="json")
    assert answer.status_code == 400 and "reason" in answer.content.decode()
    # The conflict: resolved → queued again.
    answer = client.post(f"{p}{q.conflict.pk}/resolve/", format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "queued" and answer.json()["attempt"] == 2
    # Resolving it again: it is queued now, not a conflict.
    assert client.post(f"{p}{q.conflict.pk}/resolve/").status_code == 409
    answer = client.post(f"{p}{q.queued.pk}/skip/", {"reason": "not needed"}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "skipped"
    assert "not needed" in answer.json()["status_reason"]
    assert Task.objects.get(pk=q.queued.task_id).status == Task.Status.BLOCKED


def test_review_decisions_and_bad_input(q):
    client = as_(q, "operator")
    url = f"/api/tasks/{q.review_task.pk}/review/"
    for body, says in (
        ({"decision": "maybe"}, "decision"),
        ({}, "decision"),
        ({"decision": "changes_requested"}, "comment"),
        ({"decision": "changes_requested", "comment": "   "}, "comment"),
        ({"decision": "approved", "cancel": True}, "cancel"),
        ({"decision": "approved", "comment": "x" * 30_000}, "comment"),
        ({"decision": ["approved"]}, "decision"),
    ):
        answer = client.post(url, body, format="json")
        assert answer.status_code == 400, (body, answer.content)
        assert says in answer.content.decode()
    assert not TaskReview.objects.exists()
    answer = client.post(url, {"decision": "approved", "comment": "LGTM"}, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["decision"] == "approved" and answer.json()["task_status"] == "integrating"
    assert Integration.objects.get(task=q.review_task, status="queued")
    # Reviewing again: the task is no longer in review.
    answer = client.post(url, {"decision": "rejected"}, format="json")
    assert answer.status_code == 409 and "review" in answer.json()["detail"]


def test_review_reject_and_cancel(q):
    client = as_(q, "operator")
    answer = client.post(
        f"/api/tasks/{q.review_task.pk}/review/", {"decision": "rejected", "cancel": True}, format="json"
    )
    assert answer.status_code == 201 and answer.json()["task_status"] == "cancelled"


def test_pr_body(q):
    answer = as_(q, "viewer").get(f"/api/tasks/{q.merged.task_id}/pr_body/")
    assert answer.status_code == 200
    markdown = answer.json()["markdown"]
    assert markdown.startswith("# Add\n") and "Did Add." in markdown and "`calc.py`" in markdown
    assert f"merged as `{q.merged.merge_commit[:12]}`" in markdown
    assert as_(q, "viewer").get("/api/tasks/999999/pr_body/").status_code == 404


def test_from_ref_on_run_creation(q):
    client = as_(q, "operator")
    url = f"/api/projects/{q.project.pk}/runs/"
    git(q.project.repo_path, "branch", "feature/x")
    answer = client.post(url, {"prompt": "hi", "agent": "scripted", "from_ref": "feature/x"}, format="json")
    assert answer.status_code == 201, answer.content
    run = ExecutionRun.objects.get(pk=answer.json()["id"])
    assert run.settings.get("from_ref") == "feature/x"
    for ref, says in (
        ("no-such-branch", "from_ref"),
        ("--upload-pack=x", "from_ref"),
        ("a" * 301, "from_ref"),
    ):
        answer = client.post(url, {"prompt": "hi", "agent": "scripted", "from_ref": ref}, format="json")
        assert answer.status_code == 400 and says in answer.content.decode(), answer.content
    answer = client.post(
        url,
        {"prompt": "hi", "agent": "scripted", "from_ref": "feature/x", "task": q.review_task.pk},
        format="json",
    )
    assert answer.status_code == 400 and "only for runs without a task" in answer.json()["detail"]
