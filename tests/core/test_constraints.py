"""Every database constraint of the domain: a violating row is refused by the database
(IntegrityError) and by full_clean() with the constraint's own message."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from autopilot.manager.models import FileStat, Proposal
from autopilot.models import Project, ProjectMembership
from blueprints.models import Blueprint, BlueprintSectionSummary, SummaryJob, TaskDependency
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    ExecutionStepFactory,
    IngestionJobFactory,
    IntegrationFactory,
    MembershipFactory,
    PlanNodeFactory,
    ProjectFactory,
    ProposalFactory,
    TaskDependencyFactory,
    TaskFactory,
    UsageRecordFactory,
    UserFactory,
)

NO_REPO = "/nonexistent/constraint-tests"
APPS = ("autopilot", "blueprints", "runs", "manager")


def _project(**kwargs) -> Project:
    return ProjectFactory(repo_path=NO_REPO, **kwargs)


def _blueprint(**kwargs) -> Blueprint:
    return BlueprintFactory(project=kwargs.pop("project", None) or _project(), **kwargs)


# Each case: (constraint name, a function that saves what the violation needs and returns the
# violating instance, unsaved or changed in memory).
CASES = {
    # autopilot
    "project_max_parallel_at_least_1": lambda: ProjectFactory.build(repo_path=NO_REPO, max_parallel_runs=0),
    "project_run_budget_not_negative": lambda: ProjectFactory.build(
        repo_path=NO_REPO, default_run_budget_usd=Decimal("-0.01")
    ),
    "project_daily_budget_not_negative": lambda: ProjectFactory.build(
        repo_path=NO_REPO, daily_budget_usd=Decimal("-1")
    ),
    "project_max_attempts_at_least_1": lambda: ProjectFactory.build(repo_path=NO_REPO, max_attempts=0),
    "membership_unique_user_per_project": lambda: (
        lambda m: ProjectMembership(project=m.project, user=m.user, role="viewer")
    )(MembershipFactory(project=_project())),
    "proposal_one_pending_per_task": lambda: (lambda p: Proposal(project=p.project, task=p.task))(
        ProposalFactory(task=TaskFactory(project=_project()))
    ),
    "filestat_unique_path": lambda: (lambda f: FileStat(project=f.project, path=f.path))(
        FileStat.objects.create(project=_project(), path="src/app.py")
    ),
    # blueprints
    "blueprint_unique_version": lambda: (
        lambda b: BlueprintFactory.build(project=b.project, version=b.version)
    )(_blueprint()),
    "blueprint_one_active_per_project": lambda: (
        lambda b: BlueprintFactory.build(project=b.project, version=b.version + 1, status="active")
    )(_blueprint(status="active")),
    "blueprint_version_positive": lambda: BlueprintFactory.build(project=_project(), version=0),
    "ingestion_progress_range": lambda: IngestionJobFactory.build(
        blueprint=(b := _blueprint()), project=b.project, progress=1.5
    ),
    "summary_job_progress_range": lambda: SummaryJob(project=_project(), progress=1.5),
    "section_summary_unique": lambda: (
        lambda s: BlueprintSectionSummary(node=s.node, content_hash=s.content_hash, kind=s.kind, text="again")
    )(
        BlueprintSectionSummary.objects.create(
            node=PlanNodeFactory(blueprint=_blueprint()), content_hash="h", kind="extractive", text="once"
        )
    ),
    "plannode_unique_anchor_per_project": lambda: (
        lambda n: PlanNodeFactory.build(blueprint=n.blueprint, project=n.project, anchor=n.anchor)
    )(PlanNodeFactory(blueprint=_blueprint())),
    "plannode_end_after_start": lambda: PlanNodeFactory.build(
        blueprint=(b := _blueprint()), project=b.project, start=10, end=9
    ),
    "plannode_priority_range": lambda: PlanNodeFactory.build(
        blueprint=(b := _blueprint()), project=b.project, priority=6
    ),
    "task_priority_range": lambda: TaskFactory.build(project=_project(), priority=6),
    "task_complexity_range": lambda: TaskFactory.build(project=_project(), complexity=11),
    "task_unique_source_key": lambda: (
        lambda t: TaskFactory.build(project=t.project, source_key=t.source_key)
    )(TaskFactory(project=_project(), source_key="node:1")),
    "dependency_unique_pair": lambda: (lambda d: TaskDependency(task=d.task, depends_on=d.depends_on))(
        TaskDependencyFactory(task=TaskFactory(project=_project()))
    ),
    "dependency_not_self": lambda: (lambda t: TaskDependency(task=t, depends_on=t))(
        TaskFactory(project=_project())
    ),
    # runs
    "run_budget_not_negative": lambda: ExecutionRunFactory.build(
        project=_project(), budget_usd=Decimal("-1")
    ),
    "run_cost_not_negative": lambda: ExecutionRunFactory.build(
        project=_project(), cost_usd=Decimal("-0.000001")
    ),
    "run_priority_range": lambda: ExecutionRunFactory.build(project=_project(), priority=6),
    "run_one_open_code_run_per_task": lambda: (
        lambda r: ExecutionRunFactory.build(project=r.project, task=r.task, status="running")
    )(ExecutionRunFactory(project=(p := _project()), task=TaskFactory(project=p))),
    "integration_one_in_flight_per_project": lambda: (
        lambda i: IntegrationFactory.build(
            project=i.project, task=TaskFactory(project=i.project), status="testing"
        )
    )(IntegrationFactory(project=_project(), status="merging")),
    "integration_one_open_per_task": lambda: (
        lambda i: IntegrationFactory.build(project=i.project, task=i.task, status="queued")
    )(IntegrationFactory(project=_project(), status="testing")),
    "step_unique_seq_per_run": lambda: (lambda s: ExecutionStepFactory.build(run=s.run, seq=s.seq))(
        ExecutionStepFactory(run=ExecutionRunFactory(project=_project()))
    ),
    "usage_cost_not_negative": lambda: UsageRecordFactory.build(
        run=(r := ExecutionRunFactory(project=_project())), project=r.project, cost_usd=Decimal("-1")
    ),
}

# Extra violations of constraints that have two sides (a range) or several shapes.
EXTRA_CASES = {
    "ingestion_progress_below_0": (
        "ingestion_progress_range",
        lambda: IngestionJobFactory.build(blueprint=(b := _blueprint()), project=b.project, progress=-0.1),
    ),
    "summary_job_progress_below_0": (
        "summary_job_progress_range",
        lambda: SummaryJob(project=_project(), progress=-0.1),
    ),
    "task_complexity_0": (
        "task_complexity_range",
        lambda: TaskFactory.build(project=_project(), complexity=0),
    ),
    "run_open_code_run_queued_vs_waiting": (
        "run_one_open_code_run_per_task",
        lambda: (
            lambda r: ExecutionRunFactory.build(project=r.project, task=r.task, status="waiting_approval")
        )(ExecutionRunFactory(project=(p := _project()), task=TaskFactory(project=p), status="queued")),
    ),
}


def _constraints() -> dict[str, models.BaseConstraint]:
    found = {}
    for app in APPS:
        for model in apps.get_app_config(app).get_models():
            for constraint in model._meta.constraints:
                found[constraint.name] = constraint
    return found


ALL_CASES = {name: (name, build) for name, build in CASES.items()} | EXTRA_CASES


def test_every_constraint_has_a_case():
    assert sorted(set(_constraints()) - set(CASES)) == []


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_database_refuses_the_violation(case):
    # Given a row that breaks the constraint
    name, build = ALL_CASES[case]
    obj = build()
    count = type(obj).objects.count()
    # When it is saved without validation, then the database refuses it
    with pytest.raises(IntegrityError), transaction.atomic():
        obj.save()
    assert type(obj).objects.count() == count


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_full_clean_reports_the_constraint_message(case):
    # Given a row that breaks the constraint
    name, build = ALL_CASES[case]
    obj = build()
    # When it is validated, then the error is the constraint's own message
    with pytest.raises(ValidationError) as refused:
        obj.full_clean()
    assert _constraints()[name].violation_error_message in refused.value.messages


# --- Unique fields and what the constraints allow -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["name", "slug"])
def test_project_name_and_slug_are_unique(field):
    first = _project(name="Alpha", slug="alpha")
    clash = ProjectFactory.build(repo_path=NO_REPO, **{field: getattr(first, field)})
    with pytest.raises(IntegrityError), transaction.atomic():
        clash.save()
    with pytest.raises(ValidationError) as refused:
        clash.full_clean()
    assert refused.value.message_dict[field] == [f"Project with this {field.capitalize()} already exists."]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    [
        "blank-source-keys-repeat",
        "same-source-key-other-project",
        "archived-anchor-reused",
        "dismissed-proposals-repeat",
        "inactive-blueprints-repeat",
        "open-run-other-role",
        "finished-runs-repeat",
        "boundary-values",
    ],
)
def test_constraints_allow_what_they_should(case):
    # Given rows on the edge of a constraint, when saved and validated, then both accept them
    project = _project()
    if case == "blank-source-keys-repeat":
        rows = [TaskFactory.build(project=project, source_key="") for _ in range(2)]
    elif case == "same-source-key-other-project":
        TaskFactory(project=project, source_key="k")
        rows = [TaskFactory.build(project=_project(), source_key="k")]
    elif case == "archived-anchor-reused":
        node = PlanNodeFactory(
            blueprint=_blueprint(project=project), archived_at=timezone.now(), status="archived"
        )
        rows = [PlanNodeFactory.build(blueprint=node.blueprint, project=project, anchor=node.anchor)]
    elif case == "dismissed-proposals-repeat":
        task = TaskFactory(project=project)
        ProposalFactory(task=task, status="dismissed")
        rows = [
            Proposal(project=project, task=task, status="dismissed"),
            Proposal(project=project, task=task),
        ]
    elif case == "inactive-blueprints-repeat":
        _blueprint(project=project, status="active")
        rows = [
            BlueprintFactory.build(project=project, status="draft"),
            BlueprintFactory.build(project=project, status="superseded"),
        ]
    elif case == "open-run-other-role":
        task = TaskFactory(project=project)
        ExecutionRunFactory(project=project, task=task, status="running")
        rows = [ExecutionRunFactory.build(project=project, task=task, role="test", status="running")]
    elif case == "finished-runs-repeat":
        task = TaskFactory(project=project)
        rows = [
            ExecutionRunFactory.build(project=project, task=task, status=s)
            for s in ("failed", "succeeded", "queued")
        ]
    else:
        rows = [
            ProjectFactory.build(
                repo_path=NO_REPO,
                max_parallel_runs=1,
                max_attempts=1,
                default_run_budget_usd=Decimal("0"),
                daily_budget_usd=Decimal("0"),
            ),
            TaskFactory.build(project=project, priority=0, complexity=1),
            TaskFactory.build(project=project, priority=5, complexity=10),
            IngestionJobFactory.build(
                blueprint=(b := _blueprint(project=project)), project=project, progress=1.0
            ),
            PlanNodeFactory.build(blueprint=b, project=project, start=5, end=5, priority=5),
            ExecutionRunFactory.build(project=project, budget_usd=Decimal("0"), priority=5),
        ]
    for row in rows:
        row.full_clean()
        row.save()
    assert all(row.pk for row in rows)


@pytest.mark.django_db
def test_membership_of_another_user_is_fine():
    membership = MembershipFactory(project=_project())
    other = ProjectMembership(project=membership.project, user=UserFactory(), role="owner")
    other.full_clean()
    other.save()
