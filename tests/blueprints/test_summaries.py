"""Section summaries without a model: the extractive summary, its cache by content hash, the summaries
job through the API and the CLI, and the summary on the node API and the plan page."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from blueprints.ingestion import ingest_blueprint
from blueprints.models import BlueprintSectionSummary, PlanNode, SummaryJob
from blueprints.summaries import SUMMARY_CHARS, extractive_summary, summarize_project, summary_for
from runs.tasks import run_summary_job
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

SPEC = """# Phase 1

The first phase builds the core. It has two parts. This sentence is the third. A fourth one is left out.

## Login

Users sign in with a **password**; see [the RFC](https://example.com/rfc).

```python
def login(): ...  # code is never summarized
```

- [ ] hash passwords with argon2
- [ ] lock the account after 5 failures
* rate-limit by IP

| table | skipped |
|-------|---------|

## Storage

SQLite first.
"""


def node(project, anchor):
    return PlanNode.objects.get(project=project, anchor=anchor, archived_at__isnull=True)


def test_extractive_summary_takes_first_sentences_then_key_bullets():
    body = SPEC.split("## Login\n\n", 1)[1].split("## Storage")[0]
    summary = extractive_summary(body)
    assert summary.splitlines() == [
        "Users sign in with a password; see the RFC.",
        "- hash passwords with argon2",
        "- lock the account after 5 failures",
        "- rate-limit by IP",
    ]
    first = extractive_summary(SPEC.split("\n\n", 1)[1].split("## Login")[0])
    assert first == "The first phase builds the core. It has two parts. This sentence is the third."
    assert extractive_summary(body) == summary  # deterministic


def test_extractive_summary_stays_within_its_cap():
    long = " ".join(["A very long sentence without an end"] * 200)
    assert len(extractive_summary(long)) <= SUMMARY_CHARS
    bullets = "\n".join(f"- item {i} " + "x" * 150 for i in range(10))
    summary = extractive_summary("Intro.\n\n" + bullets)
    assert len(summary) <= SUMMARY_CHARS and summary.startswith("Intro.\n- item 0")
    assert extractive_summary("") == "" and extractive_summary("```\ncode only\n```") == ""


def test_summary_for_computes_once_and_caches_by_content(project):
    ingest_blueprint(project=project, text=SPEC)
    login = node(project, "phase-1/login")
    assert summary_for(login).startswith("Users sign in with a password")
    cached = BlueprintSectionSummary.objects.get(node=login)
    assert (cached.kind, cached.content_hash) == ("extractive", login.content_hash)
    assert summary_for(login) == cached.text
    assert BlueprintSectionSummary.objects.filter(node=login).count() == 1
    # a checklist item is summarized by its own text
    item = node(project, "phase-1/login/hash-passwords-with-argon2")
    assert "argon2" in summary_for(item)


def test_reingest_keeps_unchanged_summaries_and_resummarizes_changed_sections(project):
    ingest_blueprint(project=project, text=SPEC)
    first = summarize_project(project)
    assert first["summarized"] == first["sections"] == 5 and first["cached"] == 0  # 3 headings, 2 items
    # nothing changed: nothing to do
    assert summarize_project(project)["summarized"] == 0
    # version 2 edits Storage only
    ingest_blueprint(project=project, text=SPEC.replace("SQLite first.", "PostgreSQL from day one."))
    again = summarize_project(project)
    assert (again["summarized"], again["cached"]) == (1, 4)
    storage = node(project, "phase-1/storage")
    assert summary_for(storage) == "PostgreSQL from day one."


def test_a_node_not_in_the_current_tree_has_no_summary(project):
    ingest_blueprint(project=project, text=SPEC)
    storage = node(project, "phase-1/storage")
    ingest_blueprint(project=project, text=SPEC.replace("## Storage\n\nSQLite first.\n", ""))
    storage.refresh_from_db()
    assert storage.archived_at is not None and summary_for(storage) == ""


def test_no_plan_summarizes_nothing(project):
    assert summarize_project(project) == {"sections": 0, "summarized": 0, "cached": 0}


# --- Doors ------------------------------------------------------------------------------------------------


def _api(user=None):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def test_operator_starts_a_summaries_job_and_follows_it(
    project, operator, viewer, django_capture_on_commit_callbacks
):
    ingest_blueprint(project=project, text=SPEC)
    with django_capture_on_commit_callbacks(execute=True):
        response = _api(operator).post(f"/api/projects/{project.pk}/summaries/", {}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["kind"], body["url"]) == (
        "queued",
        "extractive",
        f"/api/summary_jobs/{body['id']}/",
    )
    # the worker runs it
    run_summary_job(body["id"])
    job = _api(viewer).get(body["url"]).json()
    assert (job["status"], job["progress"], job["stage"]) == ("succeeded", 1.0, "done")
    assert job["counts"] == {"sections": 5, "summarized": 5, "cached": 0}
    # a second delivery does nothing
    run_summary_job(body["id"])
    assert BlueprintSectionSummary.objects.filter(node__project=project).count() == 5


def test_summaries_permissions_and_bad_input(project, viewer, user, operator):
    url = f"/api/projects/{project.pk}/summaries/"
    assert _api(viewer).post(url, {}, format="json").status_code == 403
    assert _api(user).post(url, {}, format="json").status_code == 404
    assert _api().post(url, {}, format="json").status_code in (401, 403)
    owner = MembershipFactory(project=project, role="owner").user
    assert _api(owner).post(url, {}, format="json").status_code == 202
    bad = _api(operator).post(url, {"llm": "perhaps"}, format="json")
    assert bad.status_code == 400 and "llm" in bad.json()
    job = SummaryJob.objects.filter(project=project).first()
    assert _api(user).get(f"/api/summary_jobs/{job.pk}/").status_code == 404
    assert not SummaryJob.objects.filter(project=project, created_by=operator).exists()


def test_node_api_shows_the_section_summary(project, viewer):
    ingest_blueprint(project=project, text=SPEC)
    login = node(project, "phase-1/login")
    body = _api(viewer).get(f"/api/plan_nodes/{login.pk}/").json()
    assert body["section_summary"].startswith("Users sign in with a password")


def test_plan_page_shows_cached_summaries_escaped(project, viewer):
    ingest_blueprint(
        project=project, text=SPEC + '\n## Danger\n\nKeep 1 < 2 & "x" > 0. <script>alert(1)</script>\n'
    )
    summarize_project(project)
    client = Client()
    client.force_login(viewer)
    html = client.get(f"/projects/{project.pk}/plan/").content.decode()
    assert '<div class="node-summary muted small">Users sign in with a password; see the RFC.' in html
    assert "Keep 1 &lt; 2 &amp; &quot;x&quot; &gt; 0." in html  # markup in a summary is text
    assert "<script>alert(1)" not in html


def run(*args: str) -> str:
    out = StringIO()
    call_command("plan", *args, stdout=out)
    return out.getvalue()


def test_cli_summarize(project, viewer):
    ingest_blueprint(project=project, text=SPEC)
    assert "5 sections summarized, 0 kept (5 in the plan; job #" in run("summarize", project.slug)
    data = json.loads(run("summarize", project.slug, "--json"))
    assert (data["summarized"], data["cached"], data["kind"]) == (0, 5, "extractive")
    with pytest.raises(CommandError, match="operator"):
        run("summarize", project.slug, "--user", viewer.username)
