"""REST: blueprints, plan nodes, ingestion jobs."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from blueprints.models import Blueprint, IngestionJob, PlanNode
from blueprints.tasks import run_ingestion_job

SPEC = "# Phase 1\n\n## Login\n\nPassword login.\n\n- [ ] form\n\n# Phase 2\n\n## Search\n\nFull text.\n"


def _client(user):
    client = APIClient()
    client.force_login(user)
    return client


def test_post_json_ingests_and_returns_version_counts_and_diff(project, operator):
    # when an operator posts a spec as JSON
    response = _client(operator).post(
        f"/api/projects/{project.pk}/blueprints/", {"title": "Spec", "text": SPEC}, format="json"
    )
    # then version 1 is created synchronously, with its counts and diff
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["status"], body["title"]) == (1, "active", "Spec")
    assert body["counts"]["headings"] == 4 and body["counts"]["checklist_items"] == 1
    assert body["counts"]["tasks"] >= 1
    assert [d["anchor"] for d in body["diff"]["added"]][:2] == ["phase-1", "phase-1/login"]
    assert body["elapsed_s"] > 0


def test_multipart_upload_and_list(project, operator, viewer):
    # given an uploaded file
    upload = SimpleUploadedFile("plan.md", SPEC.encode(), content_type="text/markdown")
    response = _client(operator).post(
        f"/api/projects/{project.pk}/blueprints/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json()["title"] == "plan.md"
    # then a viewer lists the versions
    listing = _client(viewer).get(f"/api/projects/{project.pk}/blueprints/")
    assert listing.status_code == 200
    assert [(b["version"], b["status"]) for b in listing.json()] == [(1, "active")]
    assert "source_text" not in listing.json()[0]


@pytest.mark.parametrize(
    "payload, message",
    [
        pytest.param({"text": ""}, "empty", id="empty"),
        pytest.param({"text": "just words, no structure"}, "does not look like a spec", id="not-a-spec"),
        pytest.param({"title": "x"}, "Give the blueprint as 'text'", id="nothing"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(project, operator, payload, message):
    response = _client(operator).post(f"/api/projects/{project.pk}/blueprints/", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Blueprint.objects.filter(project=project).exists()


def test_binary_upload_is_refused(project, operator):
    upload = SimpleUploadedFile(
        "x.bin", b"\x7fELF\x02\x01\x01\x00\x00", content_type="application/octet-stream"
    )
    response = _client(operator).post(
        f"/api/projects/{project.pk}/blueprints/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert "NUL byte at byte offset 7" in response.json()["detail"]


def test_viewer_cannot_ingest_and_strangers_see_nothing(project, viewer, user):
    response = _client(viewer).post(f"/api/projects/{project.pk}/blueprints/", {"text": SPEC}, format="json")
    assert response.status_code == 403
    assert _client(user).get(f"/api/projects/{project.pk}/blueprints/").status_code == 404


def test_async_ingestion_job(project, operator, django_capture_on_commit_callbacks):
    # when the ingestion is asked to run in the background
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(operator).post(
            f"/api/projects/{project.pk}/blueprints/?async=1", {"text": SPEC, "title": "Async"}, format="json"
        )
    # then a queued job is returned with its id
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    # when the worker runs it (the django-q2 entry point)
    run_ingestion_job(job_id)
    # then the job reports the version it made
    body = _client(operator).get(f"/api/ingestion_jobs/{job_id}/").json()
    assert (body["status"], body["progress"], body["version"]) == ("succeeded", 1.0, 1)
    assert body["counts"]["headings"] == 4
    assert IngestionJob.objects.get(pk=job_id).source_text == ""
    # and a second delivery does nothing
    run_ingestion_job(job_id)
    assert Blueprint.objects.filter(project=project).count() == 1


def test_async_job_that_fails_records_the_reason(project, operator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _client(operator).post(
            f"/api/projects/{project.pk}/blueprints/?async=1", {"text": "no structure here"}, format="json"
        )
    job_id = response.json()["id"]
    run_ingestion_job(job_id)
    body = _client(operator).get(f"/api/ingestion_jobs/{job_id}/").json()
    assert body["status"] == "failed" and "does not look like a spec" in body["error"]
    assert not Blueprint.objects.filter(project=project).exists()
    # a failed job can be queued again (and fails again, for the same reason)
    with django_capture_on_commit_callbacks(execute=True):
        retried = _client(operator).post(f"/api/ingestion_jobs/{job_id}/retry/")
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    run_ingestion_job(job_id)
    assert IngestionJob.objects.get(pk=job_id).status == "failed"


def test_blueprint_detail_patch_diff_nodes_and_generate_plan(project, operator, viewer):
    client = _client(operator)
    client.post(f"/api/projects/{project.pk}/blueprints/", {"text": SPEC}, format="json")
    v2 = client.post(
        f"/api/projects/{project.pk}/blueprints/",
        {"text": SPEC.replace("Full text.", "Full text, ranked.")},
        format="json",
    ).json()
    bp_id = v2["blueprint"]
    # detail and rename
    assert _client(viewer).get(f"/api/blueprints/{bp_id}/").json()["version"] == 2
    assert (
        client.patch(f"/api/blueprints/{bp_id}/", {"title": "Renamed"}, format="json").json()["title"]
        == "Renamed"
    )
    assert (
        _client(viewer).patch(f"/api/blueprints/{bp_id}/", {"title": "x"}, format="json").status_code == 403
    )
    # diff
    diff = _client(viewer).get(f"/api/blueprints/{bp_id}/diff/").json()
    assert [d["anchor"] for d in diff["changed"]] == ["phase-2/search"]
    assert (diff["from_version"], diff["to_version"]) == (1, 2)
    # flat node list
    nodes = _client(viewer).get(f"/api/blueprints/{bp_id}/nodes/").json()
    assert [n["anchor"] for n in nodes] == [
        "phase-1",
        "phase-1/login",
        "phase-1/login/form",
        "phase-2",
        "phase-2/search",
    ]
    assert nodes[2]["origin"] == "checklist" and nodes[2]["parent"] == nodes[1]["id"]
    # generate_plan is idempotent
    again = client.post(f"/api/blueprints/{bp_id}/generate_plan/").json()
    assert again["counts"]["unchanged"] == 5
    # activating version 1 again reconciles the tree to its text
    v1 = Blueprint.objects.get(project=project, version=1)
    body = client.patch(f"/api/blueprints/{v1.pk}/", {"status": "active"}, format="json").json()
    assert body["status"] == "active"
    assert [d["anchor"] for d in body["reconciled"]["diff"]["changed"]] == ["phase-2/search"]


def test_patch_plan_node(project, operator, viewer):
    client = _client(operator)
    client.post(f"/api/projects/{project.pk}/blueprints/", {"text": SPEC}, format="json")
    node = PlanNode.objects.get(project=project, anchor="phase-1/login")
    # operators edit priority, risk, summary and status
    response = client.patch(
        f"/api/plan_nodes/{node.pk}/",
        {"priority": 5, "risk": "high", "summary": "Critical", "status": "in_progress"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["priority"], body["risk"], body["summary"], body["status"]) == (
        5,
        "high",
        "Critical",
        "in_progress",
    )
    # bad values and unknown fields are refused
    assert client.patch(f"/api/plan_nodes/{node.pk}/", {"priority": 9}, format="json").status_code == 400
    bad = client.patch(f"/api/plan_nodes/{node.pk}/", {"title": "x"}, format="json")
    assert bad.status_code == 400 and "Cannot edit title" in bad.json()["detail"]
    # viewers cannot
    assert (
        _client(viewer).patch(f"/api/plan_nodes/{node.pk}/", {"priority": 1}, format="json").status_code
        == 403
    )


def test_the_500k_word_spec_posted_as_json(project, operator, rust_rfcs_text):
    # a 3.3 MB JSON body (above Django's default 2.5 MB request limit) is accepted
    response = _client(operator).post(
        f"/api/projects/{project.pk}/blueprints/",
        {"text": rust_rfcs_text, "generate_tasks": False},
        format="json",
    )
    assert response.status_code == 201, response.content[:300]
    assert response.json()["counts"]["headings"] == 4062
    assert response.json()["diff"]["truncated"]["added"] == 4062 - 1000
