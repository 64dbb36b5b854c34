"""The run page's alignment panel and its "check" action (Django test client)."""

from __future__ import annotations

import pytest
from django.test import Client

from runs.models import ExecutionRun
from tests.factories import ExecutionRunFactory
from tests.runs.test_alignment import branch_run

pytestmark = pytest.mark.django_db


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_operator_checks_from_the_run_page_and_a_viewer_reads_the_verdict(project, operator, viewer):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "tests/test_snapshot.py": "t = 1\n"})
    assert "Check alignment" in _client(operator).get(f"/runs/{run.pk}/").content.decode()

    response = _client(operator).post(f"/runs/{run.pk}/align/")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.alignment["verdict"] == "aligned"

    html = _client(viewer).get(f"/runs/{run.pk}/").content.decode()
    assert 'id="alignment-verdict">aligned<' in html
    assert "Check again" not in html and "Check alignment" not in html


def test_a_viewer_cannot_check(project, viewer):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n"})
    assert _client(viewer).post(f"/runs/{run.pk}/align/").status_code == 403
    run.refresh_from_db()
    assert run.alignment == {}


def test_a_run_without_a_branch_shows_no_panel_and_refuses_cleanly(project, operator):
    run = ExecutionRunFactory(project=project, status=ExecutionRun.Status.QUEUED)
    client = _client(operator)
    assert 'data-testid="alignment"' not in client.get(f"/runs/{run.pk}/").content.decode()
    response = client.post(f"/runs/{run.pk}/align/", follow=True)
    assert response.status_code == 200
    assert "nothing to check" in response.content.decode()
