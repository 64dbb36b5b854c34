"""The Integration tab, the "open diff" page, the retry / skip / resolve buttons, the settings form and
the task page's integration panel with its review buttons (issue #11, "Seeing it"), over a real merge
queue on real git. Viewers read, operators act, owners change settings; non-members get a 404."""

from __future__ import annotations

import pytest
from django.test import Client

from autopilot.models import Event
from blueprints.models import Task
from runs.models import Integration, TaskReview
from tests.factories import MembershipFactory, grant_register
from tests.gitrepo import git
from tests.runs.integration_doors import build_queue, commit_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def q():
    return build_queue()


def as_(q, who: str) -> Client:
    client = Client()
    client.force_login(q.users[who])
    return client


def test_the_tab_shows_everything_to_a_viewer_without_buttons(q):
    page = as_(q, "viewer").get(f"/projects/{q.project.pk}/integration/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'aria-current="page">Integration</a>' in html
    assert 'data-testid="queued"' in html and f'data-integration="{q.queued.pk}"' in html
    assert 'data-testid="waiting"' in html and "<code>calc.py</code>" in html
    assert 'data-testid="merged"' in html and q.merged.merge_commit[:10] in html
    assert 'data-testid="commits-ahead"' in html and "open diff" in html
    assert "Nothing is being merged right now." in html
    assert "retry-" not in html and "resolve-" not in html and "skip-" not in html
    assert "Owners change these settings." in html


def test_operators_get_the_buttons_owners_the_settings(q):
    html = as_(q, "operator").get(f"/projects/{q.project.pk}/integration/").content.decode()
    assert f'data-testid="resolve-{q.conflict.pk}"' in html and f'data-testid="retry-{q.conflict.pk}"' in html
    assert f'data-testid="skip-{q.queued.pk}"' in html and "save-integration-settings" not in html
    html = as_(q, "owner").get(f"/projects/{q.project.pk}/integration/").content.decode()
    assert "save-integration-settings" in html and 'name="integration_test_command"' in html
    assert "need the right to register repositories" in html  # an owner without site trust


def test_live_part_is_the_status_alone(q):
    client = as_(q, "viewer")
    html = client.get(
        f"/projects/{q.project.pk}/integration/?part=live", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert html.lstrip().startswith('<div id="integration-status"') and "<html" not in html
    assert "autopilot:project-changed from:body" in html


def test_strangers_get_404_and_the_name_never_shows(q):
    client = as_(q, "non-member")
    for url in (
        f"/projects/{q.project.pk}/integration/",
        f"/projects/{q.project.pk}/integration/diff/",
        f"/projects/{q.project.pk}/tasks/{q.review_task.pk}/integration/",
    ):
        answer = client.get(url)
        assert answer.status_code == 404 and q.project.name not in answer.content.decode()
    answer = client.post(f"/projects/{q.project.pk}/integration/{q.conflict.pk}/resolve/")
    assert answer.status_code == 404
    answer = client.post(
        f"/projects/{q.project.pk}/tasks/{q.review_task.pk}/review/", {"decision": "approved"}
    )
    assert answer.status_code == 404
    assert Client().get(f"/projects/{q.project.pk}/integration/").status_code == 302


def test_open_diff_is_escaped(q):
    repo = q.project.repo_path
    head = git(repo, "rev-parse", "autopilot/integration")
    commit_on(
        repo, "autopilot/integration", {"page.html": "<script>alert(1)</script>\n"}, start=head, message="x"
    )
    html = as_(q, "viewer").get(f"/projects/{q.project.pk}/integration/diff/").content.decode()
    assert "+&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "+def add(a, b):" in html


def test_buttons_act_and_refusals_are_messages(q):
    client = as_(q, "operator")
    base = f"/projects/{q.project.pk}/integration/"
    answer = client.post(f"{base}{q.conflict.pk}/resolve/", follow=True)
    assert answer.status_code == 200 and "resolve done" in answer.content.decode()
    assert Integration.objects.get(pk=q.conflict.pk).status == "queued"
    answer = client.post(f"{base}{q.merged.pk}/retry/", follow=True)
    assert "only a conflict or failed tests can be retried" in answer.content.decode()
    answer = client.post(f"{base}{q.queued.pk}/skip/", {"reason": ""}, follow=True)
    assert "needs a reason" in answer.content.decode()
    assert Integration.objects.get(pk=q.queued.pk).status == "queued"
    assert client.post(f"{base}{q.queued.pk}/merge/").status_code == 404
    assert client.post(f"{base}999999/retry/").status_code == 404
    viewer = as_(q, "viewer").post(f"{base}{q.queued.pk}/skip/", {"reason": "no"})
    assert viewer.status_code == 403
    assert Integration.objects.get(pk=q.queued.pk).status == "queued"


def test_settings_form(q):
    url = f"/projects/{q.project.pk}/integration/settings/"
    owner = as_(q, "owner")
    answer = owner.post(url, {"integration_branch": "a..b"})
    assert answer.status_code == 400 and "not a valid git branch name" in answer.content.decode()
    answer = owner.post(url, {"review_required": "sometimes"})
    assert answer.status_code == 400 and "choose default, required or not required" in answer.content.decode()
    answer = owner.post(url, {"integration_test_command": "make evil"})
    assert answer.status_code == 403 and "register repositories" in answer.content.decode()
    answer = owner.post(
        url,
        {
            "integration_branch": "team/merged",
            "merge_strategy": "squash",
            "review_required": "required",
            "push_task_branches_shown": "1",
        },
    )
    assert answer.status_code == 302
    q.project.refresh_from_db()
    assert (q.project.integration_branch, q.project.merge_strategy, q.project.review_required) == (
        "team/merged",
        "squash",
        True,
    )
    assert q.project.conflict_policy == "human"  # not sent: unchanged
    assert Event.objects.filter(kind="project.updated", data__changes__has_key="merge_strategy").exists()
    trusted = grant_register(MembershipFactory(project=q.project, role="owner").user)
    client = Client()
    client.force_login(trusted)
    assert client.post(url, {"integration_test_command": "python -m pytest"}).status_code == 302
    assert as_(q, "operator").post(url, {"merge_strategy": "rebase"}).status_code == 403
    q.project.refresh_from_db()
    assert (q.project.integration_test_command, q.project.merge_strategy) == ("python -m pytest", "squash")


def test_task_page_shows_its_integration_and_pr_body(q):
    html = as_(q, "viewer").get(f"/projects/{q.project.pk}/tasks/{q.merged.task_id}/").content.decode()
    assert 'id="task-integration"' in html
    assert q.merged.branch in html and q.merged.merge_commit[:10] in html
    assert 'data-testid="merge-state"' in html and "Merged" in html
    assert 'data-testid="pr-body"' in html and "# Add" in html and "copy-pr-body" in html
    assert "review-approve" not in html


def test_task_review_buttons(q):
    url = f"/projects/{q.project.pk}/tasks/{q.review_task.pk}/"
    assert "review-approve" not in as_(q, "viewer").get(url).content.decode()
    client = as_(q, "operator")
    assert 'data-testid="review-request-changes"' in client.get(url).content.decode()
    hx = {"HTTP_HX_REQUEST": "true"}
    for data, says in (
        ({"decision": "changes_requested", "comment": "  "}, "needs a comment"),
        ({"decision": "merge"}, "Unknown decision"),
        ({"decision": "approved", "cancel": "1"}, "Only a rejection can cancel"),
        ({"decision": "approved", "comment": "x" * 20_001}, "longer than"),
    ):
        answer = client.post(url + "review/", data, **hx)
        assert answer.status_code == 400 and says in answer.content.decode(), data
    assert as_(q, "viewer").post(url + "review/", {"decision": "approved"}).status_code == 403
    assert not TaskReview.objects.exists()
    answer = client.post(url + "review/", {"decision": "rejected", "comment": "wrong approach"}, follow=True)
    assert answer.status_code == 200 and "rejected" in answer.content.decode().lower()
    assert Task.objects.get(pk=q.review_task.pk).status == "todo"
    review = TaskReview.objects.get()
    assert (review.decision, review.comment, review.author) == (
        "rejected",
        "wrong approach",
        q.users["operator"],
    )


def test_admin_history_is_read_only(q):
    from tests.factories import UserFactory

    TaskReview.objects.create(task=q.review_task, decision="approved", comment="ok", author=q.users["owner"])
    client = Client()
    client.force_login(UserFactory(username="doors-root", is_staff=True, is_superuser=True))
    for model, obj in (("integration", q.conflict), ("taskreview", TaskReview.objects.get())):
        listing = client.get(f"/admin/runs/{model}/")
        assert listing.status_code == 200, model
        page = client.get(f"/admin/runs/{model}/{obj.pk}/change/")
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert client.get(f"/admin/runs/{model}/add/").status_code == 403
        assert client.post(f"/admin/runs/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "calc.py" in client.get(f"/admin/runs/integration/{q.conflict.pk}/change/").content.decode()
