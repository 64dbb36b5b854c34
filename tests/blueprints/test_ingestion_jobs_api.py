"""REST: a project's ingestion jobs — GET/POST /api/projects/{id}/ingestion_jobs/ and
GET /api/projects/{id}/ingestion_jobs/{job_id}/ (the seed's endpoints, beside today's routes)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from blueprints.models import Blueprint, IngestionJob
from blueprints.tasks import run_ingestion_job
from tests.factories import IngestionJobFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

SPEC = "# Phase 1\n\n## Login\n\nPassword login.\n\n# Phase 2\n\n## Search\n\nFull text.\n"


def _client(user=None):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def _url(project, job=None) -> str:
    base = f"/api/projects/{project.pk}/ingestion_jobs/"
    return base if job is None else f"{base}{getattr(job, 'pk', job)}/"


def test_start_a_job_then_follow_it_to_success(project, operator, viewer, django_capture_on_commit_callbacks):
    # When an operator starts an ingestion job
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(operator).post(_url(project), {"title": "Spec", "text": SPEC}, format="json")
    # Then it is queued (202) with a link to itself under the project
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["title"], body["project"]) == ("queued", "Spec", project.pk)
    assert body["url"] == _url(project, body["id"])
    # When the worker runs it
    run_ingestion_job(body["id"])
    # Then a viewer sees it succeeded with the version it made, in the list and in the detail
    detail = _client(viewer).get(_url(project, body["id"]))
    assert detail.status_code == 200
    assert (detail.json()["status"], detail.json()["version"], detail.json()["progress"]) == (
        "succeeded",
        1,
        1.0,
    )
    listing = _client(viewer).get(_url(project)).json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == body["id"]
    assert "source_text" not in listing["results"][0]
    assert Blueprint.objects.get(project=project).status == Blueprint.Status.ACTIVE


def test_a_multipart_upload_starts_a_job_titled_by_the_file(project, operator):
    upload = SimpleUploadedFile("plan.md", SPEC.encode(), content_type="text/markdown")
    response = _client(operator).post(_url(project), {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    assert IngestionJob.objects.get(pk=response.json()["id"]).title == "plan.md"


def test_list_is_newest_first_filtered_by_status_and_scoped_to_the_project(project, viewer):
    other = ProjectFactory()
    old = IngestionJobFactory(project=project, blueprint=None, status=IngestionJob.Status.FAILED)
    new = IngestionJobFactory(project=project, blueprint=None)
    IngestionJobFactory(project=other, blueprint=None)

    everything = _client(viewer).get(_url(project)).json()
    failed = _client(viewer).get(_url(project) + "?status=failed").json()

    assert [j["id"] for j in everything["results"]] == [new.pk, old.pk]
    assert [j["id"] for j in failed["results"]] == [old.pk]


def test_another_projects_job_is_not_found(project, viewer):
    other = IngestionJobFactory(project=ProjectFactory(), blueprint=None)
    response = _client(viewer).get(_url(project, other))
    assert response.status_code == 404
    assert "No ingestion job" in response.json()["detail"]
    assert _client(viewer).get(_url(project, 999_999)).status_code == 404


@pytest.mark.parametrize(
    ("who", "method", "status"),
    [
        ("anonymous", "get", (401, 403)),
        ("anonymous", "post", (401, 403)),
        ("stranger", "get", (404,)),
        ("stranger", "post", (404,)),
        ("viewer", "get", (200,)),
        ("viewer", "post", (403,)),
        ("operator", "post", (202,)),
        ("owner", "post", (202,)),
    ],
)
def test_permissions(project, who, method, status):
    user = None
    if who == "stranger":
        user = UserFactory()
    elif who != "anonymous":
        user = MembershipFactory(project=project, role=who).user
    client = _client(user)
    if method == "get":
        response = client.get(_url(project))
    else:
        response = client.post(_url(project), {"text": SPEC}, format="json")
    assert response.status_code in status, response.content
    if response.status_code == 403 and user is not None:
        assert "operator role" in response.json()["detail"]
    if status != (202,):
        assert not IngestionJob.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param({"text": ""}, "empty", id="empty"),
        pytest.param({"title": "x"}, "Give the blueprint as 'text'", id="nothing"),
        pytest.param({"text": SPEC, "generate_tasks": "perhaps"}, "generate_tasks", id="bad-flag"),
        pytest.param({"text": SPEC, "title": "t" * 301}, "title", id="title-too-long"),
        pytest.param({"text": "\x00\x01binary"}, "Null characters are not allowed", id="nul"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem_and_writes_nothing(project, operator, payload, message):
    response = _client(operator).post(_url(project), payload, format="json")
    assert response.status_code == 400, response.content
    assert message in response.content.decode()
    assert not IngestionJob.objects.filter(project=project).exists()


def test_text_and_file_together_are_refused(project, operator):
    upload = SimpleUploadedFile("plan.md", SPEC.encode())
    response = _client(operator).post(_url(project), {"file": upload, "text": SPEC}, format="multipart")
    assert response.status_code == 400 and "not both" in response.json()["detail"]


def test_bad_status_filter_is_a_400(project, viewer):
    response = _client(viewer).get(_url(project) + "?status=exploded")
    assert response.status_code == 400 and "status" in response.json()


def test_a_job_id_too_large_for_the_database_is_a_404_not_a_500(project, viewer):
    assert _client(viewer).get(_url(project, 2**70)).status_code == 404
