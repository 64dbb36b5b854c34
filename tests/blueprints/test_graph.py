"""Task generation from a plan tree: which nodes become tasks, dependencies from the text and the
plan-order policy, idempotency, cycles — on real ingested specs."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autopilot.errors import ApplicationError
from autopilot.models import Event, PlanOrderPolicy
from blueprints.graph import generate_tasks
from blueprints.models import PlanNode, Task, TaskDependency
from tests.blueprints.graph_helpers import build_plan
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

SPEC = """\
# Acme Billing — Implementation Plan

We bill customers monthly. This plan has two phases.

## Phase 1: Foundations

- [ ] Set up CI pipeline
- [x] Create the repository

### Database schema

Tables for customers and invoices.

- [ ] customers table
- [ ] invoices table
  - [ ] index on customer

### Authentication

Depends on: Database schema

Login, logout and sessions.

### API skeleton

**Requires:** [Authentication](#authentication), `database-schema`

## Phase 2: Billing

### Invoice generation

After: API skeleton

Monthly invoices as PDF.

### Payment processing

- [x] choose a provider
- [x] sign the contract

#### Prerequisites

- Invoice generation

### Reporting

Blocked by: Phase 1

## Implementation order

1. Reporting
2. Payment processing — needs the reports for reconciliation
"""


def tasks_by_title(project) -> dict[str, Task]:
    return {t.title: t for t in Task.objects.filter(project=project)}


def edges(project) -> set[tuple[str, str, str]]:
    return {
        (d.task.title, d.depends_on.title, d.source)
        for d in TaskDependency.objects.filter(task__project=project).select_related("task", "depends_on")
    }


def test_leaf_sections_and_loose_checklist_items_become_tasks():
    # given a realistic spec
    project = ProjectFactory()
    blueprint = build_plan(project, SPEC)

    # when tasks are generated
    result = generate_tasks(blueprint=blueprint)

    # then every leaf section and every checklist item directly under a grouping section is one task;
    # grouping sections and meta sections (Prerequisites, Implementation order) are not
    tasks = tasks_by_title(project)
    assert set(tasks) == {
        "Set up CI pipeline",
        "Create the repository",
        "Database schema",
        "Authentication",
        "API skeleton",
        "Invoice generation",
        "Payment processing",
        "Reporting",
    }
    assert result.tasks_created == 8 and result.tasks_total == 8
    # nested checklist items are folded into their section's task and raise its complexity
    schema = tasks["Database schema"]
    assert "index on customer" in schema.body
    assert schema.complexity > tasks["API skeleton"].complexity
    # ticked items: the loose one is done, a section whose whole checklist is ticked is done
    assert tasks["Create the repository"].status == Task.Status.DONE
    assert tasks["Payment processing"].status == Task.Status.DONE
    assert tasks["Set up CI pipeline"].status == Task.Status.TODO
    # plan order follows the document; the task keeps a stable key to its node
    ordered = list(
        Task.objects.filter(project=project).order_by("plan_order").values_list("title", flat=True)
    )
    assert ordered.index("Database schema") < ordered.index("Authentication") < ordered.index("Reporting")
    node = PlanNode.objects.get(blueprint=blueprint, title="Authentication")
    assert tasks["Authentication"].plan_node_id == node.pk
    assert tasks["Authentication"].source_key == f"node:{node.pk}"
    assert tasks["Authentication"].body.startswith("### Authentication")


def test_dependencies_from_the_text():
    # given the spec and no plan-order policy
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.NONE)
    blueprint = build_plan(project, SPEC)

    # when tasks are generated
    result = generate_tasks(blueprint=blueprint)

    # then "Depends on:" by title, "Requires:" by #anchor link and `anchor`, "After:", a Prerequisites
    # section, "Blocked by:" a whole phase, and the Implementation order list all became edges
    text = TaskDependency.Source.TEXT
    phase_1 = {
        "Set up CI pipeline",
        "Create the repository",
        "Database schema",
        "Authentication",
        "API skeleton",
    }
    assert edges(project) == {
        ("Authentication", "Database schema", text),
        ("API skeleton", "Authentication", text),
        ("API skeleton", "Database schema", text),
        ("Invoice generation", "API skeleton", text),
        ("Payment processing", "Invoice generation", text),
        ("Payment processing", "Reporting", text),
        *{("Reporting", title, text) for title in phase_1},
    }
    assert result.dependencies_created == 11
    assert result.unresolved == []


def test_generation_is_idempotent():
    # given a generated plan
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.PHASES)
    blueprint = build_plan(project, SPEC)
    first = generate_tasks(blueprint=blueprint)
    tasks_before = list(Task.objects.filter(project=project).order_by("pk").values_list("pk", "title"))
    edges_before = edges(project)

    # when it is generated again
    second = generate_tasks(blueprint=blueprint)

    # then nothing new is created and the counts are stable
    assert first.tasks_created > 0 and first.dependencies_created > 0
    assert (second.tasks_created, second.dependencies_created, second.dependencies_removed) == (0, 0, 0)
    assert second.tasks_total == first.tasks_total
    assert (
        list(Task.objects.filter(project=project).order_by("pk").values_list("pk", "title")) == tasks_before
    )
    assert edges(project) == edges_before
    assert Event.objects.filter(kind="tasks.generated", project=project).count() == 1


def test_phase_policy_uses_a_milestone_instead_of_every_pair():
    # given the phases policy: every task of phase 2 waits for every task of phase 1
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.PHASES)
    blueprint = build_plan(project, SPEC)

    # when tasks are generated
    result = generate_tasks(blueprint=blueprint)

    # then a milestone "Phase 1 — complete" depends on the 5 tasks of phase 1 and the 3 tasks of phase 2
    # depend on it: 8 edges instead of 15
    gate = Task.objects.get(project=project, kind=Task.Kind.MILESTONE)
    assert gate.title == "Phase 1: Foundations — complete"
    assert result.milestones_created == 1
    policy = TaskDependency.Source.POLICY
    gate_prereqs = {d.depends_on.title for d in gate.dependency_links.select_related("depends_on")}
    assert gate_prereqs == {
        "Set up CI pipeline",
        "Create the repository",
        "Database schema",
        "Authentication",
        "API skeleton",
    }
    assert set(gate.dependency_links.values_list("source", flat=True)) == {policy}
    dependents = {d.task.title for d in gate.dependent_links.select_related("task")}
    assert dependents == {"Invoice generation", "Payment processing", "Reporting"}


def test_changing_the_policy_and_regenerating_drops_what_the_spec_no_longer_implies():
    # given a plan generated under the phases policy (one milestone, policy edges)
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.PHASES)
    blueprint = build_plan(project, SPEC)
    generate_tasks(blueprint=blueprint)
    assert Task.objects.filter(project=project, kind=Task.Kind.MILESTONE).count() == 1

    # when the policy is switched off and the blueprint regenerated
    project.plan_order_policy = PlanOrderPolicy.NONE
    project.save()
    result = generate_tasks(blueprint=blueprint)

    # then the milestone and the policy edges are gone; the text edges stay
    assert result.milestones_removed == 1 and result.dependencies_removed == 8  # 5 into and 3 out of it
    assert not Task.objects.filter(project=project, kind=Task.Kind.MILESTONE).exists()
    assert {src for _, _, src in edges(project)} == {TaskDependency.Source.TEXT}
    assert result.tasks_total == 8


def test_siblings_policy_chains_every_task_in_plan_order():
    # given the siblings policy
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.SIBLINGS)
    blueprint = build_plan(project, "# A\n\n## One\n\n## Two\n\n## Three\n\n# B\n\n## Four\n")

    # when tasks are generated
    generate_tasks(blueprint=blueprint)

    # then each task depends on the one before it: a chain of n - 1 edges
    assert {(a, b) for a, b, _ in edges(project)} == {("Two", "One"), ("Three", "Two"), ("Four", "Three")}


def test_ingestion_generates_tasks_and_reingest_keeps_them():
    # given a spec ingested with task generation (the ingestion calls generate_tasks in its transaction)
    from blueprints.ingestion import ingest_blueprint

    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.NONE)
    ingest_blueprint(project=project, text=SPEC)
    before = dict(Task.objects.filter(project=project).values_list("title", "pk"))

    # when an edited version (one section changed, one added) is ingested
    edited = (
        SPEC.replace("Monthly invoices as PDF.", "Monthly invoices as PDF and HTML.")
        + "\n## Phase 3\n\n### Exports\n"
    )
    ingest_blueprint(project=project, text=edited)

    # then unchanged sections keep their tasks, the changed one is flagged for review, the new one is added
    after = dict(Task.objects.filter(project=project).values_list("title", "pk"))
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"Exports"}
    assert Task.objects.get(pk=before["Invoice generation"]).needs_review
    assert not Task.objects.get(pk=before["Reporting"]).needs_review


def test_generation_for_one_node_then_the_rest_adds_the_missing_edges():
    # given the spec's tree
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.NONE)
    blueprint = build_plan(project, SPEC)
    phase_2 = PlanNode.objects.get(blueprint=blueprint, title="Phase 2: Billing")

    # when only phase 2 is generated
    partial = generate_tasks(blueprint=blueprint, nodes=[phase_2])

    # then only its tasks exist, with only the edges whose both ends exist
    assert set(tasks_by_title(project)) == {"Invoice generation", "Payment processing", "Reporting"}
    assert partial.tasks_created == 3
    assert {(a, b) for a, b, _ in edges(project)} == {
        ("Payment processing", "Invoice generation"),
        ("Payment processing", "Reporting"),
    }

    # and when the whole blueprint is generated, the rest appears with the cross-phase edges
    full = generate_tasks(blueprint=blueprint)
    assert full.tasks_created == 5
    assert ("Invoice generation", "API skeleton") in {(a, b) for a, b, _ in edges(project)}
    assert len(edges(project)) == 11


def test_a_cycle_in_the_spec_is_refused_and_named():
    # given a spec whose sections depend on each other in a circle
    project = ProjectFactory()
    blueprint = build_plan(
        project,
        "# Plan\n\n## Alpha\n\nDepends on: Gamma\n\n## Beta\n\nAfter: Alpha\n\n## Gamma\n\nRequires: Beta\n",
    )

    # when tasks are generated
    with pytest.raises(ApplicationError) as caught:
        generate_tasks(blueprint=blueprint)

    # then the error names the cycle with the task titles, and nothing was written
    message = caught.value.message
    assert "cycle" in message
    assert "Alpha" in message and "Beta" in message and "Gamma" in message
    titles = caught.value.extra["cycle_titles"]
    assert titles[0] == titles[-1] and set(titles) == {"Alpha", "Beta", "Gamma"}
    # "A → B" reads "A depends on B": a rotation of Alpha → Gamma → Beta → Alpha
    loop = titles[:-1]
    assert any(loop[i:] + loop[:i] == ["Alpha", "Gamma", "Beta"] for i in range(3))
    assert not Task.objects.filter(project=project).exists()


def test_references_by_duplicate_titles_and_unknown_names():
    # given two sections with the same title and a reference that names nothing
    project = ProjectFactory()
    text = (
        "# Plan\n\n## Backend\n\n### Setup\n\n### API\n\nDepends on: Setup\n\n"
        "## Frontend\n\n### Setup\n\n### Pages\n\nDepends on: Setup, Nonexistent thing\n"
    )
    blueprint = build_plan(project, text)

    # when tasks are generated
    result = generate_tasks(blueprint=blueprint)

    # then each reference goes to the nearest preceding section of that title; the unknown one is reported
    pairs = {
        (d.task.plan_node.anchor, d.depends_on.plan_node.anchor)
        for d in TaskDependency.objects.filter(task__project=project).select_related(
            "task__plan_node", "depends_on__plan_node"
        )
    }
    assert pairs == {
        ("plan/backend/api", "plan/backend/setup"),
        ("plan/frontend/pages", "plan/frontend/setup"),
    }
    assert [u["reference"] for u in result.unresolved] == ["Nonexistent thing"]


@pytest.mark.slow
def test_generation_speed_on_the_500k_word_spec(rust_rfcs_text, capsys):
    """A measurement, not a timed assertion: prints the figure; asserts a constant number of queries."""
    # given the 500k-word benchmark spec ingested without tasks (4,062 headings)
    project = ProjectFactory(plan_order_policy=PlanOrderPolicy.PHASES)
    blueprint = build_plan(project, rust_rfcs_text)
    nodes = PlanNode.objects.filter(blueprint=blueprint).count()

    # when tasks are generated
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = generate_tasks(blueprint=blueprint)
        elapsed = time.perf_counter() - started

    # then thousands of tasks come from a constant number of queries, and a second run creates nothing
    assert result.tasks_created > 3000
    assert len(queries) < 40
    again = generate_tasks(blueprint=blueprint)
    assert (again.tasks_created, again.dependencies_created) == (0, 0)
    with capsys.disabled():
        print(
            f"\ngenerate_tasks: {nodes} nodes → {result.tasks_created} tasks "
            f"({result.milestones_created} milestones), {result.dependencies_created} dependencies "
            f"in {elapsed:.3f} s, {len(queries)} queries"
        )
