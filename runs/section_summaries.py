"""Section summaries as a job (blueprints.SummaryJob): extractive (blueprints.summaries, no model), or
written by the project's manager-role model (`Project.agent_for("manager")`) through the same SDK
clients as the native backend (runs.backends.native: Anthropic Messages or an OpenAI-compatible Chat
Completions endpoint, base URLs and keys from settings).

The model gets the sections that have no model summary for their current content (blueprints.summaries
caches by content hash: a re-ingest re-summarizes only the changed sections), BATCH_SECTIONS at a time
(each section's own text capped at SECTION_CHARS, redacted on its way out), and answers one JSON object
{section id: summary}. Each call's tokens are recorded as a UsageRecord of the project (no run), priced
from the price table. Progress is saved on the job row and pushed live (`summaryjob.progress` events),
like an ingestion job's. A model error fails the job with the provider's message; the batches already
answered stay cached, so running it again continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autopilot.errors import ApplicationError, InvalidTransition
from autopilot.events import push_event, record_event
from autopilot.jobs import ERROR, FAILED, JobRunner, Outcome
from autopilot.models import Project
from autopilot.redaction import Redactor
from autopilot.state import transition
from blueprints.models import BlueprintSectionSummary, SummaryJob
from blueprints.selectors import active_blueprint, layout_of
from blueprints.summaries import SUMMARY_CHARS, pending_sections, save_summary, summarize_project
from runs.backends.native import _retries, _timeout, split_model
from runs.budget import cost_of
from runs.models import UsageRecord

logger = logging.getLogger(__name__)

BATCH_SECTIONS = 20
SECTION_CHARS = 4_000
MAX_TOKENS = 4_096
PROGRESS_SAVE_INTERVAL_S = 0.3
SYSTEM_PROMPT = (
    "You summarize sections of a software specification for engineers who will implement them. For each "
    "section you are given (its id, title and text), write a summary of at most three sentences: what it "
    "requires, its key constraints and names. Answer with one JSON object only, mapping each section id "
    '(a string) to its summary, e.g. {"12": "…", "13": "…"}.'
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


# --- Jobs ---------------------------------------------------------------------------------------------


@transaction.atomic
def summary_job_create(
    *, project: Project, llm: bool = False, actor=None, enqueue: bool = True
) -> SummaryJob:
    """Queue a summaries job for the project's current plan tree (`enqueue=False`: the caller runs it)."""
    actor = actor if getattr(actor, "is_authenticated", False) else None
    kind = BlueprintSectionSummary.Kind.LLM if llm else BlueprintSectionSummary.Kind.EXTRACTIVE
    model = project.agent_for("manager")[1] if llm else ""
    job = SummaryJob.objects.create(project=project, kind=kind, model=model, created_by=actor)
    record_event(
        kind="summaryjob.created",
        subject=job,
        project=project,
        actor=actor,
        data={"kind": kind, "model": model},
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from django_q.tasks import async_task

    async_task("runs.tasks.run_summary_job", job_id, task_name=f"summaries-{job_id}", group="summaries")


def summary_job_run(*, job_id: int) -> SummaryJob:
    """The worker's entry point (and the CLI's, inline): claim the job, run it, record how it ended.
    A second delivery of the same job does nothing."""
    runner = SummaryJobRunner(SummaryJob.objects.select_related("project").get(pk=job_id))
    runner.handle()
    runner.job.refresh_from_db()
    return runner.job


class SummaryJobRunner(JobRunner):
    records_outcome = True

    def __init__(self, job: SummaryJob):
        self.job = job
        self.name = f"summary job {job.pk}"

    def start(self) -> bool:
        try:
            transition(
                self.job,
                SummaryJob.Status.RUNNING,
                reason="worker picked it up",
                fields={"started_at": timezone.now(), "stage": "starting", "progress": 0.0},
            )
        except InvalidTransition:
            logger.info("summary job %s is %s: nothing to do", self.job.pk, self.job.status)
            return False
        return True

    def run(self) -> dict:
        job = self.job
        progress = _JobProgress(job)
        if job.kind == BlueprintSectionSummary.Kind.LLM:
            counts = summarize_with_model(job.project, model=job.model, progress=progress)
        else:
            counts = summarize_project(job.project, progress=progress)
        transition(
            job,
            SummaryJob.Status.SUCCEEDED,
            reason=f"{counts['summarized']} sections summarized",
            fields={"counts": counts, "progress": 1.0, "stage": "done", "finished_at": timezone.now()},
        )
        return counts

    def terminate(self, outcome: Outcome) -> None:
        if outcome.status in (FAILED, ERROR):
            message = outcome.reason if outcome.status == FAILED else f"Internal error: {outcome.reason}"
            transition(
                self.job,
                SummaryJob.Status.FAILED,
                reason=message[:200],
                fields={"error": message, "finished_at": timezone.now()},
            )


class _JobProgress:
    """Saves (progress, stage) at most every PROGRESS_SAVE_INTERVAL_S or on a new stage, and pushes it."""

    def __init__(self, job: SummaryJob):
        self.job = job
        self.last_saved = 0.0
        self.last_stage = ""

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage == self.last_stage and now - self.last_saved < PROGRESS_SAVE_INTERVAL_S and fraction < 1:
            return
        self.last_saved, self.last_stage = now, stage
        fraction = max(0.0, min(1.0, fraction))
        SummaryJob.objects.filter(pk=self.job.pk, status=SummaryJob.Status.RUNNING).update(
            progress=fraction, stage=stage[:50], updated_at=timezone.now()
        )
        push_event(
            {
                "id": None,
                "kind": "summaryjob.progress",
                "project": self.job.project_id,
                "subject_type": "summaryjob",
                "subject_id": self.job.pk,
                "actor": None,
                "data": {"progress": round(fraction, 3), "stage": stage},
                "created_at": None,
            }
        )


# --- The model ----------------------------------------------------------------------------------------


def summarize_with_model(project: Project, *, model: str = "", progress=None) -> dict:
    """Model summaries for every current section without one for its content, in batches. Returns
    {"sections", "summarized", "cached", "missing", "calls", "cost_usd"}."""
    model = model or project.agent_for("manager")[1]
    provider, name = split_model(model)
    pending = pending_sections(project, BlueprintSectionSummary.Kind.LLM)
    call = _anthropic_call if provider == "anthropic" else _openai_call
    summarized = missing = calls = 0
    cost = 0
    redactor = Redactor.for_project(project)  # the project's .env values too
    for k in range(0, len(pending), BATCH_SECTIONS):
        batch = pending[k : k + BATCH_SECTIONS]
        prompt = "\n\n".join(
            f"## Section {node_id}: {redactor(title)}\n\n{redactor(body[:SECTION_CHARS])}"
            for node_id, _hash, title, body in batch
        )
        text, usage = call(name, prompt)
        calls += 1
        input_tokens, output_tokens = usage
        amount, priced = cost_of(model, input_tokens=input_tokens, output_tokens=output_tokens)
        UsageRecord.objects.create(  # named like the native backend's records: the bare model name
            project=project,
            run=None,
            agent_backend="native",
            model=name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=amount,
            priced=priced,
        )
        cost += amount
        answers = _parse(text)
        for node_id, content_hash, _title, _body in batch:
            summary = answers.get(str(node_id))
            if not isinstance(summary, str) or not summary.strip():
                missing += 1
                continue
            save_summary(
                node_id=node_id,
                content_hash=content_hash,
                kind=BlueprintSectionSummary.Kind.LLM,
                text=redactor(" ".join(summary.split()))[: SUMMARY_CHARS * 2],
                model=model,
            )
            summarized += 1
        if progress is not None:
            progress(min(1.0, (k + len(batch)) / len(pending)), "summarizing")
    sections = _tree_size(project)
    return {
        "sections": sections,
        "summarized": summarized,
        "cached": sections - len(pending),
        "missing": missing,
        "calls": calls,
        "cost_usd": str(cost),
    }


def _tree_size(project: Project) -> int:
    layout = layout_of(active_blueprint(project))
    return len(layout) if layout is not None else 0


def _parse(text: str) -> dict[str, Any]:
    """The JSON object in the model's answer ({} when there is none)."""
    found = _JSON_OBJECT.search(text or "")
    if found is None:
        return {}
    try:
        value = json.loads(found.group(0))
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _anthropic_call(name: str, prompt: str) -> tuple[str, tuple[int, int]]:
    import anthropic

    client = anthropic.Anthropic(
        base_url=settings.ANTHROPIC_BASE_URL or None,
        api_key=settings.ANTHROPIC_API_KEY or "not-set",
        max_retries=_retries(),
        timeout=_timeout(),
    )
    try:
        response = client.messages.create(
            model=name,
            max_tokens=MAX_TOKENS,
            system=SYSTEM_PROMPT,
            messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        )
    except anthropic.APIError as exc:
        raise ApplicationError(f"The manager-role model (anthropic:{name}) failed: {exc}") from exc
    text = "".join(getattr(block, "text", "") for block in response.content)
    usage = response.usage
    return text, ((usage.input_tokens or 0), (usage.output_tokens or 0))


def _openai_call(name: str, prompt: str) -> tuple[str, tuple[int, int]]:
    import openai

    client = openai.OpenAI(
        base_url=settings.OPENAI_BASE_URL or None,
        api_key=settings.OPENAI_API_KEY or "not-set",
        max_retries=_retries(),
        timeout=_timeout(),
    )
    try:
        response = client.chat.completions.create(
            model=name,
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        )
    except openai.APIError as exc:
        raise ApplicationError(f"The manager-role model (openai:{name}) failed: {exc}") from exc
    usage = response.usage
    text = response.choices[0].message.content if response.choices else ""
    return text or "", (
        (usage.prompt_tokens or 0) if usage else 0,
        (usage.completion_tokens or 0) if usage else 0,
    )
