"""Authentication (login page, logout, API session and token auth) and the one permission helper."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from autopilot.errors import NotFound, PermissionDenied
from autopilot.models import Role
from autopilot.permissions import has_role, require_role, role_of, visible_projects
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password


# --- Web login ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_need_login_and_send_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response.url == "/accounts/login/?next=/"


@pytest.mark.django_db
def test_login_page_renders_a_form(client):
    response = client.get("/accounts/login/?next=/projects/1/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="username"' in body and 'name="password"' in body and "csrfmiddlewaretoken" in body
    assert 'value="/projects/1/"' in body and "Log in to Autopilot" in body


@pytest.mark.django_db
def test_login_with_good_password_opens_the_dashboard(user):
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/accounts/login/", {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response.url == "/"
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_login_with_bad_password_says_so(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_login_follows_next(client, user, project):
    MembershipFactory(project=project, user=user, role=Role.VIEWER)
    response = client.post(
        f"/accounts/login/?next=/projects/{project.pk}/",
        {"username": user.username, "password": PASSWORD, "next": f"/projects/{project.pk}/"},
    )
    assert response.url == f"/projects/{project.pk}/"


@pytest.mark.django_db
def test_logout_ends_the_session(client, user):
    client.force_login(user)
    assert client.get("/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response.url == "/accounts/login/"
    assert client.get("/").status_code == 302


# --- API authentication -------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_session_auth_needs_csrf_for_writes(user, project):
    MembershipFactory(project=project, user=user, role=Role.OWNER)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/projects/").status_code == 200
    refused = client.patch(f"/api/projects/{project.pk}/", {"paused": True}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]


@pytest.mark.django_db
def test_obtain_a_token_and_use_it(user, project):
    MembershipFactory(project=project, user=user, role=Role.OPERATOR)
    client = APIClient(enforce_csrf_checks=True)
    # When a user exchanges username and password for a token
    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    key = response.json()["token"]
    assert key == Token.objects.get(user=user).key and response.json()["username"] == user.username
    # Then the token authenticates API calls (no session, no CSRF needed)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.patch(f"/api/projects/{project.pk}/", {"paused": True}, format="json").status_code == 200
    # And asking again returns the same token
    again = APIClient().post("/api/auth/token/", {"username": user.username, "password": PASSWORD})
    assert again.json()["token"] == key


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["wrong-password", "unknown-user", "inactive-user", "missing-field"])
def test_token_is_refused(case, user):
    payload = {"username": user.username, "password": PASSWORD}
    if case == "wrong-password":
        payload["password"] = "nope"
    elif case == "unknown-user":
        payload["username"] = "ghost"
    elif case == "inactive-user":
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    else:
        payload.pop("password")
    response = APIClient().post("/api/auth/token/", payload, format="json")
    assert response.status_code == (400 if case == "missing-field" else 403)
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_bad_token_is_refused(project):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/projects/")
    # 403, not 401: session auth comes first in DEFAULT_AUTHENTICATION_CLASSES and sends no WWW-Authenticate
    assert response.status_code == 403 and response.json()["detail"] == "Invalid token."


# --- The permission helper ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "viewer_ok", "operator_ok", "owner_ok"),
    [
        (None, False, False, False),
        ("viewer", True, False, False),
        ("operator", True, True, False),
        ("owner", True, True, True),
        ("superuser", True, True, True),
    ],
)
def test_role_ranks(project, role, viewer_ok, operator_ok, owner_ok):
    if role == "superuser":
        user = UserFactory(is_superuser=True)
    else:
        user = UserFactory()
        if role:
            MembershipFactory(project=project, user=user, role=role)
    assert [has_role(user, project, r) for r in (Role.VIEWER, Role.OPERATOR, Role.OWNER)] == [
        viewer_ok,
        operator_ok,
        owner_ok,
    ]
    assert (project in visible_projects(user)) == viewer_ok


@pytest.mark.django_db
def test_require_role_hides_projects_from_non_members(project, user):
    with pytest.raises(NotFound):
        require_role(user, project, Role.VIEWER)


@pytest.mark.django_db
def test_require_role_names_the_role_needed(project, viewer):
    with pytest.raises(PermissionDenied) as refused:
        require_role(viewer, project, Role.OWNER)
    assert refused.value.message == f"This needs the owner role on project '{project.name}'; you are viewer."


@pytest.mark.django_db
def test_inactive_and_anonymous_users_have_no_role(project, owner):
    from django.contrib.auth.models import AnonymousUser

    assert role_of(AnonymousUser(), project) is None
    owner.is_active = False
    assert role_of(owner, project) is None and not visible_projects(owner).exists()


@pytest.mark.django_db
def test_visible_projects_lists_each_project_once(user):
    project = ProjectFactory()
    MembershipFactory(project=project, user=user, role=Role.VIEWER)
    MembershipFactory(project=project, role=Role.OWNER)
    assert list(visible_projects(user)) == [project]
