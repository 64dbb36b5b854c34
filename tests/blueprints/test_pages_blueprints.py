"""Web pages: blueprint versions + diff, the upload form with its job's progress, the plan tree."""

from __future__ import annotations

import re

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from blueprints.ingestion import ingest_blueprint
from blueprints.models import Blueprint, IngestionJob
from blueprints.tasks import run_ingestion_job

SPEC = "# Phase 1\n\n## Login\n\nPassword login.\n\n- [ ] form\n\n# Phase 2\n\n## Search\n\nFull text.\n"


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_versions_page_lists_versions_and_shows_the_diff(project, viewer):
    ingest_blueprint(project=project, text=SPEC, title="Spec")
    ingest_blueprint(project=project, text=SPEC.replace("Full text.", "Ranked full text.") + "\n## Export\n")
    page = _client(viewer).get(f"/projects/{project.pk}/blueprints/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "v2" in html and "v1" in html and "Superseded" in html
    assert "1 changed" in html and "phase-2/search" in html and "phase-2/export" in html
    # viewers get no upload form
    assert "Ingest a new version" not in html
    # selecting a version over htmx swaps only the diff section
    partial = _client(viewer).get(
        f"/projects/{project.pk}/blueprints/?version=1", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="version-diff"
    )
    assert partial.status_code == 200
    assert partial.content.decode().lstrip().startswith('<section class="card" id="version-diff">')
    assert "First version" in partial.content.decode()
    # the full diff page
    diff = _client(viewer).get(f"/projects/{project.pk}/blueprints/v2/")
    assert diff.status_code == 200 and "Changes against v1" in diff.content.decode()


def test_upload_starts_a_job_and_its_progress_partial_stops_polling_when_done(
    project, operator, django_capture_on_commit_callbacks
):
    client = _client(operator)
    assert "Ingest a new version" in client.get(f"/projects/{project.pk}/blueprints/").content.decode()
    # when a file is uploaded through the form (htmx)
    upload = SimpleUploadedFile("spec.md", SPEC.encode(), content_type="text/markdown")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/projects/{project.pk}/blueprints/ingest/",
            {"file": upload, "title": "", "generate_tasks": "on"},
            HTTP_HX_REQUEST="true",
        )
    # then the job partial comes back, polling its own URL
    html = response.content.decode()
    job = IngestionJob.objects.get(project=project)
    assert 'hx-trigger="every 500ms"' in html and f"/blueprints/jobs/{job.pk}/" in html
    poll = client.get(f"/projects/{project.pk}/blueprints/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert poll.status_code == 200 and "Queued" in poll.content.decode()
    # when the worker has run it, the partial shows the result and tells htmx to stop polling (286)
    run_ingestion_job(job.pk)
    done = client.get(f"/projects/{project.pk}/blueprints/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert done.status_code == 286
    assert "Version 1 is active" in done.content.decode()
    assert "every 500ms" not in done.content.decode()
    # and the full job page works without htmx
    assert client.get(f"/projects/{project.pk}/blueprints/jobs/{job.pk}/").status_code == 200


def test_bad_paste_shows_the_error_and_queues_nothing(project, operator):
    response = _client(operator).post(
        f"/projects/{project.pk}/blueprints/ingest/", {"text": "bad\x00text"}, HTTP_HX_REQUEST="true"
    )
    assert "Null characters are not allowed" in response.content.decode()
    upload = SimpleUploadedFile("spec.md", b"# Title\n\xff\xfe", content_type="text/markdown")
    response = _client(operator).post(
        f"/projects/{project.pk}/blueprints/ingest/", {"file": upload}, HTTP_HX_REQUEST="true"
    )
    assert "not valid UTF-8: invalid byte 0xff at byte offset 8" in response.content.decode()
    assert not IngestionJob.objects.exists()
    assert (
        _client(operator)
        .post(f"/projects/{project.pk}/blueprints/ingest/", {"text": ""}, HTTP_HX_REQUEST="true")
        .content.decode()
        .count("Paste the spec or choose a file")
        == 1
    )


def test_viewer_cannot_post_and_strangers_get_404(project, viewer, user):
    assert (
        _client(viewer).post(f"/projects/{project.pk}/blueprints/ingest/", {"text": SPEC}).status_code == 403
    )
    assert _client(user).get(f"/projects/{project.pk}/blueprints/").status_code == 404
    assert _client(user).get(f"/projects/{project.pk}/plan/").status_code == 404


def test_plan_tree_with_task_counts(project, viewer):
    ingest_blueprint(project=project, text=SPEC)
    page = _client(viewer).get(f"/projects/{project.pk}/plan/")
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("<details") == 3  # Phase 1, Login (has its checklist item), Phase 2
    assert "Login" in html and "☐" in html
    assert re.search(r'class="count status-\w+"[^>]*>1 ', html)


def test_plan_tree_of_5000_nodes_is_one_page_with_few_queries(project, viewer, django_assert_max_num_queries):
    # given a spec with 5,000 sections
    spec = "".join(
        f"# Phase {p}\n\n" + "".join(f"## Item {p}.{i}\n\nText.\n\n" for i in range(99)) for p in range(50)
    )
    ingest_blueprint(project=project, text=spec, generate_tasks=False)
    client = _client(viewer)
    # when the plan page is shown, then the query count does not grow with the tree (a fixed number:
    # the page's own, the pins read once, the cached section summaries in one query)
    with django_assert_max_num_queries(15):
        page = client.get(f"/projects/{project.pk}/plan/")
    html = page.content.decode()
    assert html.count('<li id="node-') == 5000
    assert html.count("<details") == 50
    assert Blueprint.objects.get(project=project).counts["nodes"] == 5000
