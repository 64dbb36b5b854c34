"""Login limits (security finding 9b): after AUTOPILOT_LOGIN_FAILURE_LIMIT bad passwords for one
username from one address, that pair is refused, even with the right password, on the web login,
the admin login and the API token endpoint, until the cool-off ends or `autopilot user unlock`.
In-process clients; tests/core/test_proxies.py does the same over real HTTP through `autopilot serve`.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import F
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory

PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password
LIMIT = settings.AXES_FAILURE_LIMIT
LOCKED = "Too many failed logins"

pytestmark = pytest.mark.django_db


def web_login(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def token_login(client: APIClient, username: str, password: str):
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json")


def fail_until_locked(send, username: str) -> list:
    """Send LIMIT bad passwords; return the responses."""
    return [send(username, f"wrong-{i}") for i in range(LIMIT)]


def expire_cooloff() -> None:
    """The cool-off elapses: every recorded failure becomes older than AXES_COOLOFF_TIME."""
    elapsed = settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - elapsed)


def unlock(*args: str) -> str:
    out = io.StringIO()
    call_command("user", "unlock", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- Settings ------------------------------------------------------------------------------------


def test_defaults_are_five_failures_and_fifteen_minutes():
    assert settings.AUTOPILOT_LOGIN_FAILURE_LIMIT == settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


# --- Web login -----------------------------------------------------------------------------------


def test_web_login_locks_the_user_after_the_limit_even_with_the_right_password():
    user = UserFactory()
    client = Client()
    # Given LIMIT - 1 bad passwords, each answered by the ordinary form error
    responses = fail_until_locked(lambda u, p: web_login(client, u, p), user.username)
    assert all(r.status_code == 200 and "didn't match" in r.content.decode() for r in responses[:-1])
    # Then the failure that reaches the limit shows the lockout page
    assert responses[-1].status_code == 429 and LOCKED in responses[-1].content.decode()
    # And the right password is refused with the lockout message, without a session
    right = web_login(client, user.username, PASSWORD)
    body = right.content.decode()
    assert right.status_code == 429 and LOCKED in body and "15 minutes" in body
    assert right["Retry-After"] == "900"
    assert "autopilot user unlock" in body and "Back to the login page" in body
    assert client.get("/").status_code == 302


def test_web_login_lock_leaves_other_users_and_other_addresses_alone():
    victim, other = UserFactory(), UserFactory()
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    fail_until_locked(lambda u, p: web_login(attacker, u, p), victim.username)
    assert web_login(attacker, victim.username, PASSWORD).status_code == 429
    # Another user from the same address logs in
    assert web_login(attacker, other.username, PASSWORD).status_code == 302
    # The same user from another address logs in
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert web_login(elsewhere, victim.username, PASSWORD).status_code == 302
    assert elsewhere.get("/").status_code == 200


def test_web_login_works_again_after_the_cooloff():
    user = UserFactory()
    client = Client()
    fail_until_locked(lambda u, p: web_login(client, u, p), user.username)
    assert web_login(client, user.username, PASSWORD).status_code == 429
    expire_cooloff()
    assert web_login(client, user.username, PASSWORD).status_code == 302
    assert client.get("/").status_code == 200


def test_attempts_during_the_lock_do_not_extend_it():
    user = UserFactory()
    client = Client()
    fail_until_locked(lambda u, p: web_login(client, u, p), user.username)
    recorded = AccessAttempt.objects.get(username=user.username)
    for _ in range(3):
        assert web_login(client, user.username, "still-wrong").status_code == 429
    after = AccessAttempt.objects.get(pk=recorded.pk)
    assert (after.failures_since_start, after.attempt_time) == (LIMIT, recorded.attempt_time)


def test_a_successful_login_clears_earlier_failures():
    user = UserFactory()
    client = Client()
    for i in range(LIMIT - 1):
        web_login(client, user.username, f"wrong-{i}")
    assert web_login(client, user.username, PASSWORD).status_code == 302
    assert not AccessAttempt.objects.filter(username=user.username).exists()


def test_failed_logins_do_not_store_the_password():
    user = UserFactory()
    web_login(Client(), user.username, "my-secret-guess")
    attempt = AccessAttempt.objects.get(username=user.username)
    assert "my-secret-guess" not in attempt.post_data


def test_admin_login_is_limited_too():
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    responses = fail_until_locked(lambda u, p: web_login(client, u, p, "/admin/login/"), admin.username)
    assert responses[-1].status_code == 429
    right = web_login(client, admin.username, PASSWORD, "/admin/login/")
    assert right.status_code == 429 and LOCKED in right.content.decode()
    assert client.get("/admin/").status_code == 302
    # One lock per username and address, whichever form was used
    assert web_login(client, admin.username, PASSWORD).status_code == 429


# --- API token endpoint --------------------------------------------------------------------------


def test_token_endpoint_locks_after_the_limit():
    user = UserFactory()
    client = APIClient()
    responses = fail_until_locked(lambda u, p: token_login(client, u, p), user.username)
    assert [r.status_code for r in responses] == [403] * (LIMIT - 1) + [429]
    right = token_login(client, user.username, PASSWORD)
    assert right.status_code == 429 and LOCKED in right.json()["detail"]
    assert right["Retry-After"] == "900"
    assert not Token.objects.exists()
    # Another address still gets its token
    assert token_login(APIClient(REMOTE_ADDR="198.51.100.9"), user.username, PASSWORD).status_code == 200


def test_token_endpoint_works_again_after_the_cooloff():
    user = UserFactory()
    client = APIClient()
    fail_until_locked(lambda u, p: token_login(client, u, p), user.username)
    assert token_login(client, user.username, PASSWORD).status_code == 429
    expire_cooloff()
    assert token_login(client, user.username, PASSWORD).status_code == 200


def test_web_and_api_failures_count_together():
    user = UserFactory()
    for i in range(LIMIT - 1):
        token_login(APIClient(), user.username, f"wrong-{i}")
    assert web_login(Client(), user.username, "wrong-again").status_code == 429
    assert token_login(APIClient(), user.username, PASSWORD).status_code == 429


# --- Unlocking -----------------------------------------------------------------------------------


def test_cli_unlock_lifts_the_lock():
    user = UserFactory()
    client = Client()
    fail_until_locked(lambda u, p: web_login(client, u, p), user.username)
    assert web_login(client, user.username, PASSWORD).status_code == 429
    assert unlock(user.username).strip() == f"unlocked {user.username} (1 failed-login record cleared)"
    assert web_login(client, user.username, PASSWORD).status_code == 302


def test_cli_unlock_of_a_user_not_locked_says_so():
    user = UserFactory()
    assert unlock(user.username).strip() == f"{user.username} was not locked out"


def test_cli_unlock_clears_a_name_without_an_account():
    web_login(Client(), "admin", "guess")
    assert "unlocked admin" in unlock("admin")
    assert not AccessAttempt.objects.exists()


def test_cli_unlock_of_an_unknown_name_exits_2():
    with pytest.raises(CommandError) as failed:
        unlock("ghost")
    assert failed.value.returncode == 2 and "No user 'ghost'" in str(failed.value)


def test_admin_lists_locked_attempts_for_a_superuser():
    user = UserFactory()
    web_login(Client(), user.username, "wrong")
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and user.username in page.content.decode()
