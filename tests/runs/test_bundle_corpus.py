"""The context bundle on the shared 500,000-word corpus (the first 325 Rust RFCs): a deep task's parts,
their order and the budget. The corpus is ingested once for the module (committed, removed after)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprints.ingestion import ingest_blueprint
from blueprints.models import PlanNode, Task
from blueprints.pinning import PINNED_TITLE_RE
from runs.bundle import DROP_ORDER, DROPPED, LABELS, ORDER, build_bundle
from runs.context import TASK_INSTRUCTION
from runs.models import ExecutionRun
from tests.factories import ProjectFactory

RUST_RFCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "blueprints" / "rust-rfcs-500k.md"

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def corpus(django_db_setup, django_db_blocker):
    assert RUST_RFCS.exists(), f"the shared corpus {RUST_RFCS} is missing"
    with django_db_blocker.unblock():
        project = ProjectFactory()
        ingest_blueprint(project=project, text=RUST_RFCS.read_text(encoding="utf-8"), title="Rust RFCs")
    yield project
    with django_db_blocker.unblock():
        project.delete()


def deep_task(project) -> Task:
    """The first work task (document order) four levels down whose ancestors all have an introduction:
    RFC → section → subsection → the task's own heading."""
    for task in (
        Task.objects.filter(project=project, kind=Task.Kind.WORK, plan_node__depth=4)
        .select_related("plan_node")
        .order_by("plan_order")
    ):
        bundle = build_bundle(new_run(task))
        if bundle.part("ancestry") and bundle.part("ancestry").body.count("\n### ") == 3:
            return task
    raise AssertionError("no deep task in the corpus")


def new_run(task, **kw) -> ExecutionRun:
    return ExecutionRun(
        project=task.project,
        task=task,
        agent_backend="native",
        model="anthropic:claude-sonnet-4-6",
        prompt=TASK_INSTRUCTION,
        **kw,
    )


def test_a_deep_task_gets_its_section_its_ancestry_and_the_pinned_context(corpus):
    task = deep_task(corpus)
    node = task.plan_node
    bundle = build_bundle(new_run(task))

    # the parts present appear in the fixed order, the task first, the instruction last
    names = [p.name for p in bundle.parts]
    assert names == sorted(names, key=ORDER.index)
    assert names[0] == "task" and names[-1] == "instruction"
    assert {"ancestry", "pinned", "snapshot"} <= set(names)
    assert bundle.tokens <= bundle.budget_tokens == 24_000

    # the task: its title, its anchor, its text
    task_text = bundle.part("task").text
    assert f"Task #{task.pk}: {task.title}" in task_text
    assert f"({node.anchor})" in task_text
    assert task.body.strip()[:200] in task_text

    # its place: the titles of its three ancestors from the RFC down, each with its introduction
    ancestors = []
    parent = PlanNode.objects.get(pk=node.parent_id)
    while parent is not None:
        ancestors.insert(0, parent)
        parent = PlanNode.objects.filter(pk=parent.parent_id).first()
    assert len(ancestors) == 3 and ancestors[0].title.startswith("RFC ")
    ancestry = bundle.part("ancestry").text
    assert " → ".join(a.title for a in ancestors) in ancestry
    for a in ancestors:
        assert f"### {a.title} ({a.anchor})" in ancestry

    # pinned by default: top-level or second-level headings named like the documented list
    pinned = PlanNode.objects.filter(
        project=corpus,
        title__in=[
            line[4:].rsplit(" (", 1)[0]
            for line in bundle.part("pinned").text.splitlines()
            if line.startswith("### ")
        ],
    )
    assert pinned.exists()
    assert all(PINNED_TITLE_RE.match(n.title) and n.depth <= 2 for n in pinned)


def test_a_small_budget_drops_in_order_lists_it_and_holds(corpus):
    task = deep_task(corpus)
    full = build_bundle(new_run(task))
    bundle = build_bundle(new_run(task), budget_tokens=full.part("task").full_tokens + 200)

    assert bundle.tokens <= bundle.budget_tokens
    # what was left out follows DROP_ORDER and is listed in the bundle itself
    steps = [f"{LABELS[n]}: {'summarized' if a == 'summarize' else 'left out'}" for n, a in DROP_ORDER]
    assert bundle.omitted[0] == "Project snapshot: left out"  # the first step of DROP_ORDER
    assert bundle.omitted and [steps.index(line) for line in bundle.omitted] == sorted(
        steps.index(line) for line in bundle.omitted
    )
    listed = bundle.part("omitted").text
    assert all(line in listed for line in bundle.omitted)
    # the task itself is whole (it fits), every dropped part is empty
    assert bundle.part("task").state == "included"
    assert all(p.text == "" for p in bundle.parts if p.state == DROPPED)
