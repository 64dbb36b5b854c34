"""The core REST API: projects, members, events — roles enforced by autopilot.permissions."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from autopilot.models import Event, Project, ProjectMembership
from tests.factories import MembershipFactory, PlanNodeFactory, ProjectFactory, UserFactory, grant_register
from tests.gitrepo import make_repo


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- Projects -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_only_visible_projects_with_my_role(project, viewer):
    # Given a project the viewer belongs to and one they do not
    ProjectFactory()
    # When they list projects
    response = client_for(viewer).get("/api/projects/")
    # Then they see only theirs, with their role
    assert response.status_code == 200
    assert [(p["id"], p["my_role"]) for p in response.json()["results"]] == [(project.pk, "viewer")]


@pytest.mark.django_db
def test_list_queries_do_not_grow_with_projects(user, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(user)

    def count():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/projects/").status_code == 200
        return len(captured)

    repo = ProjectFactory().repo_path
    for i in range(3):
        MembershipFactory(user=user, project=ProjectFactory(repo_path=repo, name=f"a{i}", slug=f"a{i}"))
    small = count()
    for i in range(10):
        MembershipFactory(user=user, project=ProjectFactory(repo_path=repo, name=f"b{i}", slug=f"b{i}"))
    with django_assert_max_num_queries(small):
        count()


@pytest.mark.django_db
def test_filter_projects_by_mode_and_text(user):
    repo = ProjectFactory().repo_path
    for name, mode in [("Alpha", "off"), ("Beta", "full_auto"), ("Alphabet", "full_auto")]:
        MembershipFactory(
            user=user,
            project=ProjectFactory(name=name, slug=name.lower(), repo_path=repo, autonomy_mode=mode),
        )
    response = client_for(user).get("/api/projects/", {"autonomy_mode": "full_auto", "q": "alpha"})
    assert [p["name"] for p in response.json()["results"]] == ["Alphabet"]


@pytest.mark.django_db
def test_create_project_makes_the_creator_owner(user, tmp_path, settings):
    # Given a git repository under a repository root, and a user with the right to register repositories
    repo = make_repo(tmp_path / "repo")
    settings.AUTOPILOT_REPO_ROOTS = [tmp_path.resolve()]
    user = grant_register(user)
    # When the user registers it
    response = client_for(user).post(
        "/api/projects/",
        {
            "name": "My App",
            "repo_path": str(repo),
            "test_command": "pytest -q",
            "command_allowlist": ["pytest"],
            "autonomy_mode": "suggest",
        },
        format="json",
    )
    # Then it exists, they are its owner, and an event says who created it
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["slug"], body["my_role"], body["autonomy_mode"]) == (
        "My App",
        "my-app",
        "owner",
        "suggest",
    )
    assert ProjectMembership.objects.get(project_id=body["id"]).user == user
    assert Event.objects.get(kind="project.created").actor == user


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "X", "repo_path": "relative/path"}, "must be an absolute path"),
        ({"name": "X", "repo_path": "/nonexistent/repo"}, "does not exist"),
        ({"name": "X", "repo_path": "{repo}", "base_branch": "nope"}, "has no branch 'nope'"),
        (
            {"name": "X", "repo_path": "{repo}", "model_matrix": {"wizard": {"agent": "scripted"}}},
            "unknown role 'wizard'",
        ),
        ({"name": "{taken}", "repo_path": "{repo}"}, "already exists"),
    ],
    ids=["relative-path", "missing-dir", "missing-branch", "bad-matrix-role", "name-taken"],
)
def test_create_project_refuses_bad_input(admin_user, project, payload, message, tmp_path):
    # A superuser may register anywhere: what is refused here is the input, not the location.
    repo = make_repo(tmp_path / "free-repo")
    payload = {
        k: v.format(repo=repo, taken=project.name) if isinstance(v, str) else v for k, v in payload.items()
    }
    count = Project.objects.count()
    response = client_for(admin_user).post("/api/projects/", payload, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert Project.objects.count() == count


@pytest.mark.django_db
def test_create_project_validates_types(user):
    response = client_for(user).post(
        "/api/projects/", {"name": "X", "repo_path": "/x", "max_parallel_runs": 0}, format="json"
    )
    assert response.status_code == 400 and "max_parallel_runs" in response.json()


@pytest.mark.django_db
def test_retrieve_is_404_for_non_members(project, user):
    response = client_for(user).get(f"/api/projects/{project.pk}/")
    assert response.status_code == 404


@pytest.mark.django_db
def test_owner_patches_basic_and_autonomy_fields(project, owner):
    # Given a phase of the project's plan
    phase = PlanNodeFactory(blueprint__project=project)
    # When an owner changes a basic field and autonomy settings at once
    response = client_for(owner).patch(
        f"/api/projects/{project.pk}/",
        {
            "description": "Now with words",
            "autonomy_mode": "semi_auto",
            "paused": True,
            "active_phase": phase.pk,
            "daily_budget_usd": "12.50",
        },
        format="json",
    )
    # Then both are saved, each kind of change recorded with who made it
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["description"], body["autonomy_mode"], body["paused"], body["active_phase"]) == (
        "Now with words",
        "semi_auto",
        True,
        phase.pk,
    )
    assert body["daily_budget_usd"] == "12.5000"
    autonomy = Event.objects.get(kind="project.autonomy")
    assert autonomy.actor == owner
    assert autonomy.data["changes"]["autonomy_mode"] == {"from": "off", "to": "semi_auto"}
    assert autonomy.data["changes"]["active_phase"] == {"from": None, "to": phase.pk}
    assert Event.objects.get(kind="project.updated").data["changes"]["description"]["to"] == "Now with words"


@pytest.mark.django_db
def test_patch_refuses_phase_of_another_project_and_saves_nothing(project, owner):
    foreign = PlanNodeFactory()
    response = client_for(owner).patch(
        f"/api/projects/{project.pk}/", {"description": "changed", "active_phase": foreign.pk}, format="json"
    )
    assert response.status_code == 400
    assert "active phase must be a plan node of this project" in response.json()["detail"]
    project.refresh_from_db()
    assert project.description == "" and project.active_phase is None
    assert not Event.objects.filter(kind__in=["project.updated", "project.autonomy"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "{taken}"}, "already exists"),
        ({"name": "  "}, "may not be blank"),
        ({"repo_path": "/nonexistent/elsewhere"}, "does not exist"),
        ({"base_branch": "nope"}, "has no branch 'nope'"),
        ({"model_matrix": {"code": {"agent": "skynet"}}}, "unknown agent backend 'skynet'"),
    ],
    ids=["name-taken", "blank-name", "missing-repo", "missing-branch", "unknown-agent"],
)
def test_patch_refuses_bad_input(project, admin_user, payload, message):
    # A superuser may change every field anywhere: what is refused here is the input.
    taken = ProjectFactory(repo_path=project.repo_path).name
    payload = {k: v.format(taken=taken) if isinstance(v, str) else v for k, v in payload.items()}
    response = client_for(admin_user).patch(f"/api/projects/{project.pk}/", payload, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert Project.objects.get(pk=project.pk).name == project.name


@pytest.mark.django_db
def test_viewer_cannot_patch_and_is_told_the_role_needed(project, viewer):
    response = client_for(viewer).patch(f"/api/projects/{project.pk}/", {"paused": True}, format="json")
    assert response.status_code == 403
    assert (
        response.json()["detail"]
        == f"This needs the operator role on project '{project.name}'; you are viewer."
    )


@pytest.mark.django_db
def test_put_is_not_offered(project, owner):
    assert client_for(owner).put(f"/api/projects/{project.pk}/", {}, format="json").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "expected"), [("viewer", 403), ("operator", 403), ("owner", 204)])
def test_only_owners_delete(project, role, expected):
    member = MembershipFactory(project=project, role=role).user
    response = client_for(member).delete(f"/api/projects/{project.pk}/")
    assert response.status_code == expected
    assert Project.objects.filter(pk=project.pk).exists() == (expected != 204)
    if expected == 204:
        event = Event.objects.get(kind="project.deleted")
        assert event.actor == member and event.data["name"] == project.name and event.project is None


@pytest.mark.django_db
def test_anonymous_is_refused(project):
    assert APIClient().get("/api/projects/").status_code in (401, 403)


# --- Members ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_viewer_lists_members(project, viewer, owner):
    response = client_for(viewer).get(f"/api/projects/{project.pk}/members/")
    assert response.status_code == 200
    assert {(m["username"], m["role"]) for m in response.json()} == {
        (viewer.username, "viewer"),
        (owner.username, "owner"),
    }


@pytest.mark.django_db
def test_owner_adds_and_changes_a_member(project, owner):
    newcomer = UserFactory()
    client = client_for(owner)
    added = client.post(
        f"/api/projects/{project.pk}/members/", {"username": newcomer.username, "role": "viewer"}
    )
    changed = client.post(f"/api/projects/{project.pk}/members/", {"user": newcomer.pk, "role": "operator"})
    assert (added.status_code, changed.status_code) == (201, 200)
    assert ProjectMembership.objects.get(project=project, user=newcomer).role == "operator"
    events = Event.objects.filter(kind="project.membership").order_by("id")
    assert [(e.actor, e.data["role"]) for e in events] == [(owner, "viewer"), (owner, "operator")]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_non_owners_cannot_add_members(project, role):
    member = MembershipFactory(project=project, role=role).user
    response = client_for(member).post(
        f"/api/projects/{project.pk}/members/", {"user": UserFactory().pk, "role": "owner"}
    )
    assert response.status_code == 403
    assert "needs the owner role" in response.json()["detail"]


@pytest.mark.django_db
def test_member_endpoints_are_404_for_non_members(project, user):
    client = client_for(user)
    assert client.get(f"/api/projects/{project.pk}/members/").status_code == 404
    assert (
        client.post(f"/api/projects/{project.pk}/members/", {"user": user.pk, "role": "owner"}).status_code
        == 404
    )
    assert not ProjectMembership.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_add_member_refuses_unknown_user_and_role(project, owner):
    client = client_for(owner)
    assert (
        client.post(
            f"/api/projects/{project.pk}/members/", {"username": "ghost", "role": "viewer"}
        ).status_code
        == 400
    )
    assert (
        client.post(f"/api/projects/{project.pk}/members/", {"user": owner.pk, "role": "god"}).status_code
        == 400
    )


@pytest.mark.django_db
def test_owner_removes_a_member_but_not_the_last_owner(project, owner, viewer):
    client = client_for(owner)
    assert client.delete(f"/api/projects/{project.pk}/members/{viewer.pk}/").status_code == 204
    assert not ProjectMembership.objects.filter(project=project, user=viewer).exists()
    last = client.delete(f"/api/projects/{project.pk}/members/{owner.pk}/")
    assert last.status_code == 400 and "last owner" in last.json()["detail"]
    assert client.delete(f"/api/projects/{project.pk}/members/{viewer.pk}/").status_code == 404


@pytest.mark.django_db
def test_last_owner_cannot_be_demoted(project, owner):
    response = client_for(owner).post(
        f"/api/projects/{project.pk}/members/", {"user": owner.pk, "role": "viewer"}
    )
    assert response.status_code == 400 and "last owner" in response.json()["detail"]
    assert ProjectMembership.objects.get(project=project, user=owner).role == "owner"


# --- Events -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_events_of_visible_projects_after_an_id_by_kind(project, viewer):
    # Given events in the viewer's project and in another project
    other = ProjectFactory(repo_path=project.repo_path)
    first = Event.objects.create(project=project, kind="task.status", data={"n": 1})
    Event.objects.create(project=other, kind="task.status")
    second = Event.objects.create(project=project, kind="task.status", data={"n": 2})
    Event.objects.create(project=project, kind="executionrun.status")
    Event.objects.create(project=None, kind="user.created")
    client = client_for(viewer)
    # When they ask for task events after the first one
    response = client.get("/api/events/", {"project": project.pk, "after": first.pk, "kind": "task.status"})
    # Then they get only the later event of their project
    assert response.status_code == 200
    assert [e["id"] for e in response.json()["results"]] == [second.pk]
    # And without filters they see their project's events only, oldest first; a prefix works too
    everything = [e["id"] for e in client.get("/api/events/").json()["results"]]
    assert everything == sorted(Event.objects.filter(project=project).values_list("id", flat=True))
    prefixed = client.get("/api/events/", {"kind": "executionrun."}).json()["results"]
    assert [e["kind"] for e in prefixed] == ["executionrun.status"]


@pytest.mark.django_db
def test_events_of_an_invisible_project_are_404(project, user):
    Event.objects.create(project=project, kind="x")
    client = client_for(user)
    assert client.get("/api/events/", {"project": project.pk}).status_code == 404
    assert client.get("/api/events/").json()["results"] == []


@pytest.mark.django_db
def test_superuser_sees_project_less_events(project, admin_user):
    event = Event.objects.create(project=None, kind="user.created")
    ids = [e["id"] for e in client_for(admin_user).get("/api/events/").json()["results"]]
    assert event.pk in ids


@pytest.mark.django_db
def test_event_list_queries_do_not_grow(project, viewer, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(viewer)
    for _ in range(3):
        Event.objects.create(project=project, kind="x", actor=UserFactory())
    with CaptureQueriesContext(connection) as small:
        client.get("/api/events/")
    for _ in range(10):
        Event.objects.create(project=project, kind="x", actor=UserFactory())
    with django_assert_max_num_queries(len(small)):
        client.get("/api/events/")


@pytest.mark.django_db
def test_api_root_lists_the_core_endpoints(user):
    body = client_for(user).get("/api/").json()
    assert body["projects"].endswith("/api/projects/") and body["events"].endswith("/api/events/")


# --- Schema -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_schema_is_served_and_valid(admin_client):
    import yaml
    from drf_spectacular.validation import validate_schema

    response = admin_client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate_schema(schema)
    for path in (
        "/api/projects/",
        "/api/projects/{id}/",
        "/api/projects/{id}/members/",
        "/api/projects/{id}/members/{user_id}/",
        "/api/events/",
        "/api/auth/token/",
    ):
        assert path in schema["paths"], path


def test_schema_has_no_warnings_or_errors_for_any_endpoint():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator().get_schema(request=None, public=True)
    assert [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache] == []
