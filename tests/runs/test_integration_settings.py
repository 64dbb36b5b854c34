"""Project integration settings (issue #11, item 1): one service validates them for every door, each
change is a `project.updated` event, and bad input is a clear 400 naming the problem in the API, the
admin and the service, with nothing written."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from autopilot import services
from autopilot.errors import ApplicationError
from autopilot.models import Event, Project
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, grant_register
from tests.gitrepo import git, make_repo

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return ProjectFactory()


def _refused(project, says: str, **changes):
    before = Project.objects.values().get(pk=project.pk)
    events = Event.objects.count()
    with pytest.raises(ApplicationError) as caught:
        services.project_update(project=project, **changes)
    assert says in caught.value.message, caught.value.message
    assert Project.objects.values().get(pk=project.pk) == before
    assert Event.objects.count() == events
    return caught.value.message


def test_every_setting_changes_through_the_service_as_an_event(project, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    services.project_update(
        project=project,
        integration_branch="  team/integration ",
        merge_strategy="rebase",
        review_required=False,
        integration_test_command="  pytest -q  ",
        conflict_policy="human",
        integration_remote=str(remote),
        push_task_branches=True,
    )
    project.refresh_from_db()
    assert project.integration_branch == "team/integration"
    assert project.integration_test_command == "pytest -q"
    assert project.effective_integration_test_command == "pytest -q"
    assert (project.merge_strategy, project.review_required, project.needs_review) == ("rebase", False, False)
    assert (project.conflict_policy, project.integration_remote, project.push_task_branches) == (
        "human",
        str(remote),
        True,
    )
    event = Event.objects.filter(kind="project.updated").latest("id")
    assert event.data["changes"]["integration_branch"] == {
        "from": "autopilot/integration",
        "to": "team/integration",
    }
    assert set(event.data["changes"]) == {
        "integration_branch",
        "merge_strategy",
        "review_required",
        "integration_test_command",
        "conflict_policy",
        "integration_remote",
        "push_task_branches",
    }
    # The base branch's own name: integrate straight into the base.
    services.project_update(project=project, integration_branch="main", review_required=None)
    project.refresh_from_db()
    assert project.integrates_into_base and project.review_required is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "must be a branch name"),
        ("-f", "starts with '-'"),
        ("--upload-pack=x", "starts with '-'"),
        ("refs/heads/x", "give the short name"),
        ("/etc/passwd", "give the short name"),
        ("a..b", "not a valid git branch name"),
        ("a b", "not a valid git branch name"),
        ("x.lock", "not a valid git branch name"),
        ("feature/", "not a valid git branch name"),
        ("@{-1}", "give the short name"),
        ("HEAD", "not a valid git branch name"),
    ],
)
def test_bad_integration_branch(project, value, says):
    message = _refused(project, says, integration_branch=value)
    assert "integration_branch" in message


def test_bad_choices(project):
    _refused(
        project,
        "Unknown merge strategy 'octopus'; choose from merge, squash, rebase",
        merge_strategy="octopus",
    )
    _refused(project, "Unknown conflict policy 'ask'; choose from agent, human", conflict_policy="ask")
    _refused(project, "review_required must be true or false", review_required="yes")
    _refused(project, "push_task_branches must be true or false", push_task_branches=None)


def test_remote_by_name_url_or_path(project, tmp_path):
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(project.repo_path, "remote", "add", "upstream", str(bare))
    for value in (
        "upstream",
        "https://git.example.com/team/app.git",
        "ssh://git@example.com/app.git",
        "git@example.com:team/app.git",
        str(bare),
        "",
    ):
        services.project_update(project=project, integration_remote=value)
        project.refresh_from_db()
        assert project.integration_remote == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("origin", "has no remote 'origin' (its remotes: upstream)"),
        ("--receive-pack=/bin/sh", "no options"),
        ("-oProxyCommand=x", "no options"),
        ("up stream", "no options"),
        ("https://me:s3cret-pass@git.example.com/app.git", "put the credentials in the server's environment"),
        ("https://ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@github.com/a/b.git", "environment"),
        ("ftp://example.com/app.git", "unsupported URL"),
        ("./relative", "must be absolute"),
        ("/no/such/repository", "no repository at"),
    ],
)
def test_bad_remote(project, tmp_path, value, says):
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(project.repo_path, "remote", "add", "upstream", str(bare))
    message = _refused(project, says, integration_remote=value)
    assert "s3cret-pass" not in message


def test_create_takes_and_checks_integration_settings(tmp_path):
    repo = make_repo(tmp_path / "repo")
    created = services.project_create(
        name="With integration", repo_path=str(repo), integration_branch="merged", merge_strategy="squash"
    )
    assert (created.integration_branch, created.merge_strategy) == ("merged", "squash")
    with pytest.raises(ApplicationError, match="not a valid git branch name"):
        services.project_create(
            name="Bad", repo_path=str(make_repo(tmp_path / "r2")), integration_branch="a..b"
        )
    assert not Project.objects.filter(name="Bad").exists()


# --- The API door ---------------------------------------------------------------------------------


@pytest.fixture
def api(project):
    owner = grant_register(MembershipFactory(project=project, role="owner").user)
    client = APIClient()
    client.force_authenticate(owner)
    return client


def test_api_shows_and_changes_the_settings(api, project):
    url = f"/api/projects/{project.pk}/"
    shown = api.get(url).json()
    assert shown["integration_branch"] == "autopilot/integration"
    assert shown["merge_strategy"] == "merge" and shown["review_required"] is None
    answer = api.patch(
        url, {"merge_strategy": "squash", "review_required": True, "paused": True}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert (answer.json()["merge_strategy"], answer.json()["review_required"]) == ("squash", True)


@pytest.mark.parametrize(
    ("body", "field_or_text"),
    [
        ({"integration_branch": "a..b"}, "not a valid git branch name"),
        ({"integration_branch": "-x"}, "starts with '-'"),
        ({"integration_branch": "x" * 201}, "integration_branch"),
        ({"merge_strategy": "octopus"}, "merge_strategy"),
        ({"conflict_policy": 3}, "conflict_policy"),
        ({"review_required": "sometimes"}, "review_required"),
        ({"integration_remote": "https://u:hunter2hunter2@example.com/r.git"}, "environment"),
        ({"integration_remote": ["origin"]}, "integration_remote"),
        ({"push_task_branches": None}, "push_task_branches"),
    ],
)
def test_api_bad_input_is_a_400_and_writes_nothing(api, project, body, field_or_text):
    before = Project.objects.values().get(pk=project.pk)
    answer = api.patch(f"/api/projects/{project.pk}/", {**body, "paused": True}, format="json")
    assert answer.status_code == 400, answer.content
    assert field_or_text in answer.content.decode()
    assert "hunter2" not in answer.content.decode()
    assert Project.objects.values().get(pk=project.pk) == before  # not even `paused`


def test_api_roles(project):
    client = APIClient()
    url = f"/api/projects/{project.pk}/"
    operator = MembershipFactory(project=project, role="operator").user
    client.force_authenticate(operator)
    answer = client.patch(url, {"merge_strategy": "squash"}, format="json")
    assert answer.status_code == 403 and "owner role" in answer.json()["detail"]
    owner = MembershipFactory(project=project, role="owner").user  # no right to register repositories
    client.force_authenticate(owner)
    assert client.patch(url, {"merge_strategy": "squash"}, format="json").status_code == 200
    answer = client.patch(url, {"integration_test_command": "make evil"}, format="json")
    assert answer.status_code == 403 and "register repositories" in answer.json()["detail"]
    client.force_authenticate(UserFactory())
    assert client.patch(url, {"merge_strategy": "rebase"}, format="json").status_code == 404
    project.refresh_from_db()
    assert (project.merge_strategy, project.integration_test_command) == ("squash", "")


# --- The admin door -------------------------------------------------------------------------------


def test_admin_shows_a_bad_setting_on_its_field(client, project):
    root = UserFactory(username="admin-root", is_staff=True, is_superuser=True)
    client.force_login(root)
    url = f"/admin/autopilot/project/{project.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and "integration_branch" in page.content.decode()
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        data[name] = "" if value is False else ("on" if value is True else value)
    data.update({"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    data["model_matrix"] = "{}"
    data["command_allowlist"] = "[]"
    data["last_tick_summary"] = "{}"
    data["integration_branch"] = "a..b"
    answer = client.post(url, data)
    assert answer.status_code == 200, answer.status_code
    assert "not a valid git branch name" in answer.content.decode()
    project.refresh_from_db()
    assert project.integration_branch == "autopilot/integration"
    data["integration_branch"] = "team/merged"
    answer = client.post(url, data)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    project.refresh_from_db()
    assert project.integration_branch == "team/merged"
    assert Event.objects.filter(kind="project.updated", data__changes__has_key="integration_branch").exists()
