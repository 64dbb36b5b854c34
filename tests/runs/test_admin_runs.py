"""Runs in the admin: changelist and detail render; the cancel action goes through run_stop."""

from __future__ import annotations

import pytest
from django.urls import reverse

from runs.models import ExecutionRun
from tests.factories import ExecutionRunFactory, UserFactory
from tests.runs.helpers import run_now

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client_(client):
    admin = UserFactory(username="admin", is_superuser=True, is_staff=True)
    client.force_login(admin)
    return client, admin


def test_cancel_action_stops_queued_runs_and_names_the_admin(admin_client_, project):
    client, admin = admin_client_
    runs = ExecutionRunFactory.create_batch(2, project=project)
    response = client.post(
        reverse("admin:runs_executionrun_changelist"),
        {"action": "cancel_runs", "_selected_action": [r.pk for r in runs]},
        follow=True,
    )
    assert response.status_code == 200
    assert set(ExecutionRun.objects.values_list("status", flat=True)) == {"cancelled"}
    assert project.events.filter(kind="executionrun.status", actor=admin, data__to="cancelled").count() == 2


def test_finished_run_detail_shows_read_only_steps(admin_client_, project):
    client, _ = admin_client_
    run = run_now(project, [{"write": "a.txt", "content": "a"}, {"finish": "ok"}])
    page = client.get(reverse("admin:runs_executionrun_change", args=[run.pk]))
    assert page.status_code == 200
    assert b"write_file" in page.content and b'name="steps-0-status"' not in page.content
    listing = client.get(reverse("admin:runs_executionrun_changelist"))
    assert listing.status_code == 200 and b"scripted (offline demo)" in listing.content
