"""The Overview tab and its refresh form (test client; in a browser: tests/browser/test_overview.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from runs.models import ProjectSnapshot
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_sees_the_overview_without_the_refresh_form(project, viewer):
    TaskFactory(project=project, title="Parse", status="blocked")
    response = _client(viewer).get(f"/projects/{project.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="overview"' in html and "Parse" in html
    assert 'data-testid="snapshot-refresh"' not in html
    assert ProjectSnapshot.objects.filter(project=project).count() == 1  # computed once, then reused
    _client(viewer).get(f"/projects/{project.pk}/")
    assert ProjectSnapshot.objects.filter(project=project).count() == 1


def test_a_stale_snapshot_is_recomputed_when_the_overview_is_opened(project, viewer):
    old = ProjectSnapshot.objects.create(project=project, data={})
    ProjectSnapshot.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    TaskFactory(project=project, title="New since")
    html = _client(viewer).get(f"/projects/{project.pk}/").content.decode()
    assert ">0/1<" in html
    assert ProjectSnapshot.objects.filter(project=project).count() == 2


def test_an_empty_project_says_what_to_do(project, viewer):
    html = _client(viewer).get(f"/projects/{project.pk}/").content.decode()
    assert "No tasks yet: ingest a blueprint or add tasks." in html
    assert "Nothing running." in html and "No merges yet." in html


def test_operator_refresh_makes_a_new_snapshot_and_returns_to_the_overview(project, operator):
    client = _client(operator)
    assert 'data-testid="snapshot-refresh"' in client.get(f"/projects/{project.pk}/").content.decode()
    response = client.post(f"/projects/{project.pk}/snapshot/refresh/")
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/"
    assert ProjectSnapshot.objects.filter(project=project).count() == 2


def test_refresh_with_a_narrative_but_no_model_says_why(project, operator):
    response = _client(operator).post(
        f"/projects/{project.pk}/snapshot/refresh/", {"narrative": "1"}, follow=True
    )
    html = response.content.decode()
    assert "Snapshot refreshed without a narrative" in html and "scripted backend" in html


def test_a_viewer_cannot_refresh(project, viewer):
    response = _client(viewer).post(f"/projects/{project.pk}/snapshot/refresh/")
    assert response.status_code == 403
    assert not ProjectSnapshot.objects.filter(project=project).exists()


def test_refresh_is_post_only(project, operator):
    assert _client(operator).get(f"/projects/{project.pk}/snapshot/refresh/").status_code == 405
