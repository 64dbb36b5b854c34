"""The context bundle (runs.bundle): parts, order, budget and drop order, on a small real spec ingested
into the database, with integration records, reviews and earlier runs created as rows."""

from __future__ import annotations

import pytest

from blueprints.ingestion import ingest_blueprint
from blueprints.models import BlueprintSectionSummary, PlanNode, Task, TaskDependency
from blueprints.summaries import save_summary
from runs import bundle as bundles
from runs.bundle import DROP_ORDER, DROPPED, LABELS, SUMMARIZED, TRUNCATED, build_bundle, estimate_tokens
from runs.context import TASK_INSTRUCTION, build_prompt
from runs.models import ExecutionRun, ExecutionStep, Integration, TaskReview
from runs.snapshot import snapshot_refresh, snapshot_text, snapshot_text_from
from tests.factories import ExecutionRunFactory, ExecutionStepFactory, IntegrationFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SPEC = """# Phase 1: Foundation

Everything here runs on Python 3.12.

## Conventions

Use snake_case. Every module has tests.

## Storage

Keep data in SQLite. The database file lives in the data directory.

### 2.1 Schema

Tables: users, notes.

```sql
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE);
CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT NOT NULL);
CREATE INDEX notes_user ON notes(user_id);
```

Every table has an integer primary key. Foreign keys are enforced; deleting a user deletes their
notes. Timestamps are stored as ISO 8601 text in UTC, never as local time.

### Notes API

Serve notes over HTTP. Follow [the schema](#21-schema) and see Search for later work.

Depends on: [schema](#21-schema)

- [ ] list notes
- [x] create notes

## Glossary

A note is a short text.

# Phase 2: Features

## Search

Full-text search over notes.
"""


@pytest.fixture
def spec_project(db):
    project = ProjectFactory()
    ingest_blueprint(project=project, text=SPEC)
    return project


def task_titled(project, title) -> Task:
    return Task.objects.get(project=project, title=title)


def run_for(task, **kw) -> ExecutionRun:
    """A finished run of the task (a row)."""
    kw.setdefault("prompt", TASK_INSTRUCTION)
    kw.setdefault("model", "anthropic:claude-sonnet-4-6")
    return ExecutionRunFactory(project=task.project, task=task, **kw)


def new_run(task, **kw) -> ExecutionRun:
    """The run being started for the task (as the tick creates it, before it is saved)."""
    kw.setdefault("prompt", TASK_INSTRUCTION)
    kw.setdefault("model", "anthropic:claude-sonnet-4-6")
    return ExecutionRun(project=task.project, task=task, agent_backend="scripted", **kw)


def with_history(project):
    """The Notes API task after one attempt: its prerequisite integrated, the attempt failed its tests,
    a reviewer asked for changes, and its last merge conflicted."""
    notes, schema = task_titled(project, "Notes API"), task_titled(project, "2.1 Schema")
    Task.objects.filter(pk=schema.pk).update(status=Task.Status.DONE)
    schema_run = run_for(
        schema,
        status=ExecutionRun.Status.SUCCEEDED,
        result_summary="Created the users and notes tables.",
        diff_summary={
            "files": [{"path": "db/schema.sql", "added": 12, "removed": 0}],
            "added": 12,
            "removed": 0,
        },
    )
    IntegrationFactory(
        project=project,
        task=schema,
        run=schema_run,
        status=Integration.Status.MERGED,
        merge_commit="a" * 40,
        diff_summary={"files": [{"path": "db/schema.sql", "added": 12, "removed": 0}]},
    )
    failed = run_for(notes, status=ExecutionRun.Status.FAILED, status_reason="the tests failed")
    ExecutionStepFactory(
        run=failed,
        kind=ExecutionStep.Kind.TEST,
        output=(
            "collected 3 items\nFAILED tests/test_notes.py::test_list - assert 0 == 2\n"
            "1 failed, 2 passed in 0.1s"
        ),
    )
    TaskReview.objects.create(
        task=notes, run=failed, decision=TaskReview.Decision.CHANGES_REQUESTED, comment="Paginate the list."
    )
    IntegrationFactory(
        project=project,
        task=notes,
        status=Integration.Status.CONFLICT,
        conflict_files=["api/notes.py"],
        conflict_detail="<<<<<<< ours\nreturn []\n=======\nreturn notes\n>>>>>>> theirs",
    )
    return notes


def test_a_task_bundle_has_every_part_in_the_fixed_order(spec_project):
    # given the Notes API task with its history
    notes = with_history(spec_project)

    # when its bundle is built with room to spare
    bundle = build_bundle(new_run(notes))

    # then every part is there, in order, and fully included
    assert [p.name for p in bundle.parts] == [
        "task",
        "ancestry",
        "pinned",
        "related",
        "prerequisites",
        "failure",
        "reviews",
        "conflict",
        "snapshot",
        "instruction",
    ]
    assert {p.state for p in bundle.parts} == {"included"}
    assert bundle.omitted == []
    text = {p.name: p.text for p in bundle.parts}
    # the task: title, section, text and acceptance criteria
    assert text["task"].startswith(f"## Task\n\nTask #{notes.pk}: Notes API\n")
    assert "Spec section: Notes API (phase-1-foundation/storage/notes-api)" in text["task"]
    assert "Acceptance criteria:\n- [ ] list notes\n- [x] create notes" in text["task"]
    # its place: the titles from the phase down and each ancestor's introduction (not its children)
    assert "Phase 1: Foundation → Storage" in text["ancestry"]
    assert "Everything here runs on Python 3.12." in text["ancestry"]
    assert "Keep data in SQLite." in text["ancestry"]
    assert "Use snake_case" not in text["ancestry"]
    # pinned by their headings' names; the linked schema and the named Search section are related
    assert "### Conventions" in text["pinned"] and "### Glossary" in text["pinned"]
    assert "### 2.1 Schema" in text["related"] and "Tables: users, notes." in text["related"]
    assert "### Search" in text["related"]
    # the integrated prerequisite's outcome
    assert "Merge commit: " + "a" * 40 in text["prerequisites"]
    assert "Result: Created the users and notes tables." in text["prerequisites"]
    assert "Changed files: db/schema.sql" in text["prerequisites"]
    # the earlier failure, the review comment and the conflict
    assert "the tests failed" in text["failure"]
    assert "Failing tests: tests/test_notes.py::test_list" in text["failure"]
    assert "Paginate the list." in text["reviews"]
    assert "Conflicting files: api/notes.py" in text["conflict"] and "return notes" in text["conflict"]
    # the project snapshot, as runs.snapshot renders it
    assert text["snapshot"] == f"## Project snapshot\n\n{snapshot_text(spec_project)}"
    assert f"Project {spec_project.name}: 1/" in text["snapshot"]
    assert text["instruction"] == f"## Instruction\n\n{TASK_INSTRUCTION}"
    # the prompt is the parts joined; build_prompt gives the same
    assert bundle.prompt == "\n\n".join(p.text for p in bundle.parts)
    assert build_prompt(new_run(notes)) == bundle.prompt


def test_the_schema_dependency_was_read_from_the_spec(spec_project):
    notes = task_titled(spec_project, "Notes API")
    assert TaskDependency.objects.filter(task=notes, depends_on__title="2.1 Schema").exists()


def test_over_budget_parts_are_summarized_then_dropped_in_the_documented_order_and_listed(spec_project):
    notes = with_history(spec_project)
    full = build_bundle(new_run(notes))

    # when the budget is a little short: the first step (the snapshot left out) is enough
    short = build_bundle(new_run(notes), budget_tokens=full.tokens - 5)
    assert short.part("snapshot").state == DROPPED and short.part("snapshot").text == ""
    assert short.omitted == ["Project snapshot: left out"]
    assert (
        short.part("omitted").text == "## Left out to fit the context budget\n\n- Project snapshot: left out"
    )
    assert [p.name for p in short.parts][-3:] == ["snapshot", "omitted", "instruction"]
    assert {p.state for p in short.parts if p.name != "snapshot"} == {"included"}
    assert short.tokens <= short.budget_tokens

    # when it is short by more than the snapshot: the next step that applies (related sections summarized)
    # (the task has no `relevant` part: no other section has both "notes" and "api")
    assert full.part("relevant") is None
    snapshot_tokens = estimate_tokens("\n\n" + full.part("snapshot").text)
    shorter = build_bundle(new_run(notes), budget_tokens=full.tokens - snapshot_tokens - 5)
    assert shorter.part("snapshot").state == DROPPED
    assert shorter.part("related").state == SUMMARIZED
    assert shorter.omitted == ["Project snapshot: left out", "Related sections: summarized"]
    assert shorter.tokens <= shorter.budget_tokens

    # when the budget is tiny: every step that applies, in DROP_ORDER, then the task is truncated
    tiny = build_bundle(new_run(notes), budget_tokens=bundles.MIN_BUDGET // 5)
    present = {p.name for p in full.parts}
    expected = []
    for name, action in DROP_ORDER:
        if name not in present:
            continue
        label = LABELS[name]
        if action == "summarize":
            if f"{label}: left out" in expected or f"{label}: summarized" in expected:
                continue
            if full.part(name).summary is None or len(full.part(name).summary) >= len(full.part(name).body):
                continue
            expected.append(f"{label}: summarized")
        else:
            expected.append(f"{label}: left out")
    assert tiny.omitted == expected
    assert [p.name for p in tiny.parts if p.state != DROPPED] == ["task", "omitted", "instruction"]
    assert tiny.part("instruction").state == "included"


def test_the_task_is_truncated_last_and_says_so(spec_project):
    notes = task_titled(spec_project, "Notes API")
    Task.objects.filter(pk=notes.pk).update(body="Serve notes. " + "Lorem ipsum dolor sit amet. " * 400)
    notes.refresh_from_db()
    bundle = build_bundle(new_run(notes), budget_tokens=600)
    task = bundle.part("task")
    assert task.state == TRUNCATED
    assert "[… the section is truncated here:" in task.text
    assert task.text.startswith(f"## Task\n\nTask #{notes.pk}: Notes API")
    assert bundle.tokens <= 600
    # every other part that could go went first
    assert all(p.state == DROPPED for p in bundle.parts if p.name not in ("task", "omitted", "instruction"))


def test_pinning_overrides_the_default_by_name(spec_project):
    notes = task_titled(spec_project, "Notes API")
    # the owner unpins Glossary and pins Search
    PlanNode.objects.filter(project=spec_project, title="Glossary").update(pinned=False)
    PlanNode.objects.filter(project=spec_project, title="Search").update(pinned=True)
    pinned = build_bundle(new_run(notes)).part("pinned").text
    assert "### Search" in pinned and "### Conventions" in pinned
    assert "Glossary" not in pinned
    # a pinned section is not repeated among the related ones
    assert "### Search" not in (build_bundle(new_run(notes)).part("related").text)


def test_a_deep_heading_named_glossary_is_not_pinned_by_default(db):
    project = ProjectFactory()
    ingest_blueprint(
        project=project,
        text="# P\n\n## E\n\n### F\n\n#### Glossary\n\nLocal words.\n\n#### Work\n\nDo it.\n",
    )
    work = task_titled(project, "Work")
    assert build_bundle(new_run(work)).part("pinned") is None


def test_the_budget_follows_the_model_and_the_project_setting(spec_project):
    notes = task_titled(spec_project, "Notes API")
    assert bundles.default_budget("anthropic:claude-sonnet-4-6") == 24_000
    assert bundles.default_budget("openai:gpt-4o") == int(128_000 * bundles.BUNDLE_SHARE)
    assert bundles.default_budget("some-local-model") == int(32_000 * bundles.BUNDLE_SHARE)
    assert build_bundle(new_run(notes, model="openai:gpt-4o")).budget_tokens == 19_200
    spec_project.context_budget_tokens = 3000
    spec_project.save(update_fields=["context_budget_tokens"])
    notes = task_titled(spec_project, "Notes API")
    assert build_bundle(new_run(notes, model="openai:gpt-4o")).budget_tokens == 3000


def test_only_the_latest_failed_merge_and_an_earlier_failed_run_count(spec_project):
    notes = task_titled(spec_project, "Notes API")
    # an earlier run that succeeded, and a merge that went in after a conflict
    run_for(notes, status=ExecutionRun.Status.SUCCEEDED)
    IntegrationFactory(project=spec_project, task=notes, status=Integration.Status.CONFLICT)
    IntegrationFactory(
        project=spec_project, task=notes, status=Integration.Status.MERGED, merge_commit="b" * 40
    )
    names = [p.name for p in build_bundle(new_run(notes)).parts]
    assert "failure" not in names and "conflict" not in names and "prerequisites" not in names


def test_a_task_without_a_spec_section_gets_its_body_and_instruction(project):
    task = Task.objects.create(project=project, title="Fix the parser", body="It drops the last line.")
    bundle = build_bundle(new_run(task, prompt="Fix the parser"))
    assert [p.name for p in bundle.parts] == ["task", "snapshot"]
    assert bundle.prompt == (
        f"## Task\n\nTask #{task.pk}: Fix the parser\n\nIt drops the last line.\n\n"
        f"## Project snapshot\n\n{snapshot_text(project)}"
    )


def test_an_ad_hoc_run_keeps_its_prompt_as_written(project):
    run = ExecutionRun(project=project, prompt="List the files", agent_backend="scripted")
    assert build_bundle(run) is None
    assert build_prompt(run) == "List the files"


def test_stored_parts_carry_name_label_state_size_and_text(spec_project):
    notes = with_history(spec_project)
    bundle = build_bundle(new_run(notes), budget_tokens=700)
    stored = bundle.stored()
    assert [p["name"] for p in stored] == [p.name for p in bundle.parts]
    for part in stored:
        assert set(part) == {"name", "label", "state", "chars", "tokens", "full_tokens", "text"}
        assert part["chars"] == len(part["text"]) and part["tokens"] == estimate_tokens(part["text"])
        assert (part["text"] == "") == (part["state"] == DROPPED)
    assert bundles.join_parts(stored) == bundle.prompt


# --- the `relevant` part (blueprints.search), the `snapshot` part (runs.snapshot), summaries ---------

RELEVANCE_SPEC = """# Phase 1: Gateway

The gateway fronts every service; its throttling is described under each feature.

## Throttling

Apply throttling per API key: 100 requests a minute, then answer 429.

## Billing

Invoices are sent monthly. Accounts over their quota get throttling on every endpoint until they pay.
Throttling never applies to the billing page itself.

## Audit log

Every admin action is written to the audit log.
"""


@pytest.fixture
def relevance_project(db):
    project = ProjectFactory()
    ingest_blueprint(project=project, text=RELEVANCE_SPEC)
    return project


def test_a_task_gets_the_other_sections_its_title_words_appear_in(relevance_project):
    # given the Throttling task: its word appears in Billing, in its own section and in its phase's intro
    throttling = task_titled(relevance_project, "Throttling")

    # when its bundle is built
    bundle = build_bundle(new_run(throttling))

    # then Billing is its relevant section, summarized; neither its own section nor its ancestor is,
    # nor the Audit log that does not mention it
    names = [p.name for p in bundle.parts]
    assert names.index("relevant") == names.index("pinned" if "pinned" in names else "ancestry") + 1
    relevant = bundle.part("relevant").text
    billing = PlanNode.objects.get(project=relevance_project, title="Billing")
    assert relevant.startswith(f"## Other relevant sections\n\n### Billing ({billing.anchor})\n\n")
    assert "Invoices are sent monthly." in relevant
    assert "### Throttling" not in relevant and "Phase 1" not in relevant and "Audit log" not in relevant


def test_a_task_whose_title_words_appear_nowhere_else_has_no_relevant_part(relevance_project):
    audit = task_titled(relevance_project, "Audit log")
    assert "relevant" not in [p.name for p in build_bundle(new_run(audit)).parts]


def test_a_section_already_related_is_not_repeated_as_relevant(spec_project):
    # "Search" is named by the Notes API section; the Search task's relevant part is the Notes API section
    search = task_titled(spec_project, "Search")
    relevant = build_bundle(new_run(search)).part("relevant").text
    assert "### Notes API (phase-1-foundation/storage/notes-api)" in relevant
    assert "### Search" not in relevant
    # the Notes API task names Search (related): Search is not also relevant to it
    notes = build_bundle(new_run(task_titled(spec_project, "Notes API")))
    assert "### Search" in notes.part("related").text and notes.part("relevant") is None


def test_the_snapshot_part_is_the_project_snapshot_within_its_cap(relevance_project):
    # the snapshot computed now when none is stored
    throttling = task_titled(relevance_project, "Throttling")
    snapshot = build_bundle(new_run(throttling)).part("snapshot")
    assert snapshot is not None and snapshot.state == "included"
    assert snapshot.body == snapshot_text(relevance_project)
    assert snapshot.body.startswith(f"Project {relevance_project.name}: 0/")
    assert len(snapshot.body) <= 2000  # runs.snapshot.snapshot_text_from's limit
    # a stored snapshot younger than FRESH_FOR is the one used
    stored = snapshot_refresh(relevance_project)
    Task.objects.filter(pk=throttling.pk).update(status=Task.Status.DONE)
    assert build_bundle(new_run(throttling)).part("snapshot").body == snapshot_text_from(stored.data)


def test_the_snapshot_is_dropped_first_then_the_relevant_sections(relevance_project):
    throttling = task_titled(relevance_project, "Throttling")
    full = build_bundle(new_run(throttling))
    assert DROP_ORDER[:2] == (("snapshot", "drop"), ("relevant", "drop"))
    cost = estimate_tokens("\n\n" + full.part("snapshot").text)
    short = build_bundle(new_run(throttling), budget_tokens=full.tokens - cost // 2)
    assert short.omitted == ["Project snapshot: left out"]
    assert short.part("relevant").state == "included"
    cost += estimate_tokens("\n\n" + full.part("relevant").text)
    shorter = build_bundle(new_run(throttling), budget_tokens=full.tokens - cost + 5)
    assert shorter.omitted[:2] == ["Project snapshot: left out", "Other relevant sections: left out"]
    assert shorter.part("relevant").state == DROPPED
    assert shorter.tokens <= shorter.budget_tokens


def test_section_summaries_come_from_blueprints_summaries_and_are_cached(relevance_project):
    throttling = task_titled(relevance_project, "Throttling")
    billing = PlanNode.objects.get(project=relevance_project, title="Billing")
    assert not BlueprintSectionSummary.objects.filter(node=billing).exists()

    # a bundle that needs Billing's summary (its relevant part) computes and caches it
    relevant = build_bundle(new_run(throttling)).part("relevant").text
    cached = BlueprintSectionSummary.objects.get(node=billing, content_hash=billing.content_hash)
    assert cached.kind == BlueprintSectionSummary.Kind.EXTRACTIVE
    assert cached.text.startswith("Invoices are sent monthly.") and cached.text[:400] in relevant

    # a summary written by the manager-role model is preferred over the extractive one
    save_summary(
        node_id=billing.pk,
        content_hash=billing.content_hash,
        kind=BlueprintSectionSummary.Kind.LLM,
        text="Billing throttles accounts over quota.",
        model="anthropic:claude-haiku-4-5",
    )
    relevant = build_bundle(new_run(throttling)).part("relevant").text
    assert "Billing throttles accounts over quota." in relevant
    assert "Invoices are sent monthly." not in relevant
    assert bundles.summarize(bundles.Spec.load(throttling), _index(relevance_project, "Billing")) == (
        "Billing throttles accounts over quota."
    )


def _index(project, title) -> int:
    spec = bundles.Spec.load(task_titled(project, "Throttling"))
    node = PlanNode.objects.get(project=project, title=title)
    return spec.index[node.pk]
