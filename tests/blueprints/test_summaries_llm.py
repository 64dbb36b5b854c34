"""Section summaries by the manager-role model, against the fake LLM server on 127.0.0.1 with the real
Anthropic and OpenAI SDK clients: batches, the cache by content hash, usage recorded, failures."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from blueprints.ingestion import ingest_blueprint
from blueprints.models import BlueprintSectionSummary, PlanNode, SummaryJob
from blueprints.summaries import summary_for
from runs import section_summaries
from runs.models import UsageRecord
from runs.section_summaries import summary_job_create, summary_job_run
from runs.tasks import run_summary_job
from tests.fakellm import FakeLLM, error, text

pytestmark = pytest.mark.django_db

SPEC = (
    "# Phase 1\n\nIntro.\n\n## Login\n\nPasswords. Token ghp_"
    + "a1B2" * 9
    + " leaked.\n\n## Storage\n\nSQLite.\n"
)


@pytest.fixture
def fake_llm():
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


def use_model(project, settings, fake_llm, model):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.OPENAI_BASE_URL = fake_llm.base_url_v1
    settings.AUTOPILOT_LLM_MAX_RETRIES = 0
    project.model_matrix = {"manager": {"agent": "native", "model": model}}
    project.save(update_fields=["model_matrix"])


def ids(project):
    return {n.anchor: n.pk for n in PlanNode.objects.filter(project=project, archived_at__isnull=True)}


def answer(mapping: dict) -> str:
    return "Here you go:\n```json\n" + json.dumps({str(k): v for k, v in mapping.items()}) + "\n```"


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-6", "openai:gpt-5-mini"])
def test_model_summaries_in_batches_with_usage_recorded(project, settings, fake_llm, monkeypatch, model):
    ingest_blueprint(project=project, text=SPEC)
    use_model(project, settings, fake_llm, model)
    monkeypatch.setattr(section_summaries, "BATCH_SECTIONS", 2)  # 3 sections: two calls
    node = ids(project)
    fake_llm.script(
        [
            text(answer({node["phase-1"]: "Phase one.", node["phase-1/login"]: "Login by password."})),
            text(answer({node["phase-1/storage"]: "Stored in SQLite."}), input_tokens=50, output_tokens=10),
        ],
        by="calls",
    )
    job = summary_job_create(project=project, llm=True, enqueue=False)
    assert (job.kind, job.model) == ("llm", model)
    job = summary_job_run(job_id=job.pk)
    assert job.status == "succeeded", job.error
    assert job.counts["summarized"] == 3 and job.counts["calls"] == 2 and job.counts["missing"] == 0
    # the real SDK clients sent the sections, redacted, in two batches
    requests = fake_llm.model_requests()
    assert len(requests) == 2
    sent = json.dumps(requests[0].body)
    assert f"Section {node['phase-1/login']}: Login" in sent and "Passwords." in sent
    assert "ghp_" not in sent and "[REDACTED:github_token]" in sent
    # each call is a UsageRecord of the project without a run, priced when the model has a price
    usage = list(UsageRecord.objects.filter(project=project).order_by("id"))
    name = model.split(":", 1)[1]
    assert [(u.run_id, u.agent_backend, u.model, u.input_tokens, u.output_tokens) for u in usage] == [
        (None, "native", name, 100, 20),
        (None, "native", name, 50, 10),
    ]
    if model.startswith("anthropic"):
        assert usage[0].priced and usage[0].cost_usd > Decimal(0)
    # the model's summary is preferred to the extractive one
    assert summary_for(PlanNode.objects.get(pk=node["phase-1/login"])) == "Login by password."


def test_a_reingest_resummarizes_only_changed_sections(project, settings, fake_llm):
    ingest_blueprint(project=project, text=SPEC)
    use_model(project, settings, fake_llm, "anthropic:claude-sonnet-4-6")
    node = ids(project)
    fake_llm.script([text(answer({pk: f"About {anchor}." for anchor, pk in node.items()}))], by="calls")
    summary_job_run(job_id=summary_job_create(project=project, llm=True, enqueue=False).pk)
    assert len(fake_llm.model_requests()) == 1
    ingest_blueprint(project=project, text=SPEC.replace("SQLite.", "PostgreSQL."))
    fake_llm.script([text(answer({node["phase-1/storage"]: "Now PostgreSQL."}))], by="calls")
    job = summary_job_run(job_id=summary_job_create(project=project, llm=True, enqueue=False).pk)
    assert (job.counts["summarized"], job.counts["cached"]) == (1, 2)
    second = fake_llm.model_requests()[1]
    assert "PostgreSQL." in json.dumps(second.body) and "Passwords." not in json.dumps(second.body)
    assert summary_for(PlanNode.objects.get(pk=node["phase-1/storage"])) == "Now PostgreSQL."
    assert summary_for(PlanNode.objects.get(pk=node["phase-1/login"])) == "About phase-1/login."


def test_sections_the_model_leaves_out_keep_their_extractive_summary(project, settings, fake_llm):
    ingest_blueprint(project=project, text=SPEC)
    use_model(project, settings, fake_llm, "openai:gpt-5-mini")
    node = ids(project)
    fake_llm.script([text(answer({node["phase-1"]: "Phase one.", "999999": "not asked"}))], by="calls")
    job = summary_job_run(job_id=summary_job_create(project=project, llm=True, enqueue=False).pk)
    assert job.status == "succeeded" and (job.counts["summarized"], job.counts["missing"]) == (1, 2)
    assert summary_for(PlanNode.objects.get(pk=node["phase-1/storage"])) == "SQLite."
    assert not BlueprintSectionSummary.objects.filter(node_id=999999).exists()


def test_an_answer_without_json_summarizes_nothing(project, settings, fake_llm):
    ingest_blueprint(project=project, text=SPEC)
    use_model(project, settings, fake_llm, "anthropic:claude-sonnet-4-6")
    fake_llm.script([text("I cannot do that.")], by="calls")
    job = summary_job_run(job_id=summary_job_create(project=project, llm=True, enqueue=False).pk)
    assert job.status == "succeeded" and job.counts["summarized"] == 0 and job.counts["missing"] == 3


def test_a_model_error_fails_the_job_with_the_providers_message(
    project, settings, fake_llm, operator, django_capture_on_commit_callbacks
):
    ingest_blueprint(project=project, text=SPEC)
    use_model(project, settings, fake_llm, "anthropic:claude-sonnet-4-6")
    fake_llm.script(
        [error(401, {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}})]
    )
    client = APIClient()
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/projects/{project.pk}/summaries/", {"llm": True}, format="json")
    assert response.status_code == 202 and response.json()["kind"] == "llm"
    run_summary_job(response.json()["id"])
    job = SummaryJob.objects.get(pk=response.json()["id"])
    assert job.status == "failed"
    assert (
        "The manager-role model (anthropic:claude-sonnet-4-6) failed" in job.error and "bad key" in job.error
    )
    assert not BlueprintSectionSummary.objects.filter(kind="llm").exists()
    body = client.get(f"/api/summary_jobs/{job.pk}/").json()
    assert body["status"] == "failed" and "bad key" in body["error"]
