"""The admin back-office: every registered model renders with a query count that does not grow with
the number of rows, and the admin actions go through the services (an Event names the admin)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from autopilot.manager.models import Proposal
from autopilot.models import Event, Project, ProjectMembership
from blueprints.models import Blueprint, IngestionJob, PlanNode, Task, TaskDependency
from runs.models import TaskReview
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
    RunMessageFactory,
    TaskDependencyFactory,
    TaskFactory,
    UsageRecordFactory,
    UserFactory,
)

MAX_QUERIES = 40
_seq = itertools.count()


class Ctx:
    """Shared parents, created once per test; every builder adds `n` rows and returns the object
    whose change page is opened (its inlines grow with the rows too)."""

    def __init__(self):
        self.project = ProjectFactory()
        self.blueprint = BlueprintFactory(project=self.project)
        self.task = TaskFactory(project=self.project)
        self.run = ExecutionRunFactory(project=self.project, task=self.task)
        self.first: dict = {}

    def keep(self, key, obj):
        return self.first.setdefault(key, obj)


def _project(ctx: Ctx, n: int):
    for _ in range(n):
        i = next(_seq)
        ProjectFactory(name=f"Bulk {i}", slug=f"bulk-{i}", repo_path=ctx.project.repo_path)
        MembershipFactory(project=ctx.project)
    return ctx.project


def _membership(ctx: Ctx, n: int):
    rows = [MembershipFactory(project=ctx.project) for _ in range(n)]
    return ctx.keep("membership", rows[0])


def _event(ctx: Ctx, n: int):
    actor = UserFactory()
    rows = [
        Event.objects.create(
            project=ctx.project,
            kind="test.bulk",
            subject_type="project",
            subject_id=ctx.project.pk,
            actor=actor,
            data={"i": i},
        )
        for i in range(n)
    ]
    return ctx.keep("event", rows[0])


def _file_stat(ctx: Ctx, n: int):
    from autopilot.manager.models import FileStat

    rows = [
        FileStat.objects.create(project=ctx.project, path=f"src/f{next(_seq)}.py", runs=3, failures=1)
        for _ in range(n)
    ]
    return ctx.keep("filestat", rows[0])


def _proposal(ctx: Ctx, n: int):
    rows = [
        ProposalFactory(task=TaskFactory(project=ctx.project), decided_by=UserFactory()) for _ in range(n)
    ]
    return ctx.keep("proposal", rows[0])


def _blueprint(ctx: Ctx, n: int):
    for _ in range(n):
        BlueprintFactory(project=ctx.project)
        PlanNodeFactory(blueprint=ctx.blueprint)
        IngestionJobFactory(blueprint=ctx.blueprint)
    return ctx.blueprint


def _ingestion(ctx: Ctx, n: int):
    rows = [IngestionJobFactory(blueprint=ctx.blueprint) for _ in range(n)]
    return ctx.keep("job", rows[0])


def _plan_node(ctx: Ctx, n: int):
    parent = ctx.keep("node", PlanNodeFactory(blueprint=ctx.blueprint))
    for _ in range(n):
        node = PlanNodeFactory(blueprint=ctx.blueprint, parent=parent, level=2)
        TaskFactory(project=ctx.project, plan_node=node)
        TaskFactory(project=ctx.project, plan_node=parent)
    return parent


def _task(ctx: Ctx, n: int):
    for _ in range(n):
        other = TaskFactory(project=ctx.project, plan_node=PlanNodeFactory(blueprint=ctx.blueprint))
        TaskDependency.objects.create(task=ctx.task, depends_on=other)
        ExecutionRunFactory(project=ctx.project, task=other)
    return ctx.task


def _dependency(ctx: Ctx, n: int):
    rows = [TaskDependencyFactory(task=TaskFactory(project=ctx.project)) for _ in range(n)]
    return ctx.keep("dependency", rows[0])


def _run(ctx: Ctx, n: int):
    for _ in range(n):
        ExecutionRunFactory(
            project=ctx.project, task=TaskFactory(project=ctx.project), created_by=UserFactory()
        )
        step = ExecutionStepFactory(run=ctx.run)
        RunMessageFactory(run=ctx.run)
        UsageRecordFactory(run=ctx.run, step=step)
    return ctx.run


def _step(ctx: Ctx, n: int):
    rows = [ExecutionStepFactory(run=ctx.run, decided_by=UserFactory()) for _ in range(n)]
    return ctx.keep("step", rows[0])


def _message(ctx: Ctx, n: int):
    rows = [RunMessageFactory(run=ctx.run, author=UserFactory()) for _ in range(n)]
    return ctx.keep("message", rows[0])


def _usage(ctx: Ctx, n: int):
    rows = [UsageRecordFactory(run=ctx.run, step=ExecutionStepFactory(run=ctx.run)) for _ in range(n)]
    return ctx.keep("usage", rows[0])


def _integration(ctx: Ctx, n: int):
    rows = [
        IntegrationFactory(
            project=ctx.project, task=TaskFactory(project=ctx.project), run=ctx.run, status="merged"
        )
        for _ in range(n)
    ]
    return ctx.keep("integration", rows[0])


def _review(ctx: Ctx, n: int):
    rows = [
        TaskReview.objects.create(task=ctx.task, run=ctx.run, decision="approved", author=UserFactory())
        for _ in range(n)
    ]
    return ctx.keep("review", rows[0])


def _user(ctx: Ctx, n: int):
    rows = []
    for _ in range(n):
        user = UserFactory()
        user.groups.add(Group.objects.create(name=f"g{next(_seq)}"))
        rows.append(user)
    return ctx.keep("user", rows[0])


def _group(ctx: Ctx, n: int):
    rows = [Group.objects.create(name=f"group {next(_seq)}") for _ in range(n)]
    return ctx.keep("group", rows[0])


def _token(ctx: Ctx, n: int):
    from rest_framework.authtoken.models import Token, TokenProxy

    for _ in range(n):
        Token.objects.create(user=UserFactory())
    return ctx.keep("token", TokenProxy.objects.order_by("created").first())


def _schedule(ctx: Ctx, n: int):
    from django_q.models import Schedule

    rows = [
        Schedule.objects.create(
            name=f"s{next(_seq)}", func="math.copysign", schedule_type=Schedule.MINUTES, minutes=5
        )
        for _ in range(n)
    ]
    return ctx.keep("schedule", rows[0])


def _q_task(success: bool):
    def build(ctx: Ctx, n: int):
        from django.utils import timezone
        from django_q.models import Task as QTask

        rows = []
        for _ in range(n):
            i = next(_seq)
            rows.append(
                QTask.objects.create(
                    id=f"{i:032x}",
                    name=f"task-{i}",
                    func="math.floor",
                    args=(1.5,),
                    kwargs={},
                    result=1,
                    started=timezone.now(),
                    stopped=timezone.now(),
                    success=success,
                    attempt_count=1,
                )
            )
        model = "success" if success else "failure"
        return ctx.keep(model, rows[0])

    return build


def _ormq(ctx: Ctx, n: int):
    from django.utils import timezone
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    rows = []
    for _ in range(n):
        i = next(_seq)
        payload = SignedPackage.dumps(
            {
                "id": f"{i:032x}",
                "name": f"q{i}",
                "func": "math.floor",
                "args": (1.5,),
                "kwargs": {},
                "started": timezone.now(),
            }
        )
        rows.append(OrmQ.objects.create(key="default", payload=payload, lock=timezone.now()))
    return ctx.keep("ormq", rows[0])


def _axes(model_name: str):
    def build(ctx: Ctx, n: int):
        from axes import models as axes_models
        from django.utils import timezone

        model = getattr(axes_models, model_name)
        extra = (
            {"failures_since_start": 1, "get_data": "", "post_data": ""}
            if model_name == "AccessAttempt"
            else {}
        )
        rows = [
            model.objects.create(
                username=f"axes{next(_seq)}",
                ip_address="192.0.2.1",
                user_agent="test",
                http_accept="*/*",
                path_info="/accounts/login/",
                attempt_time=timezone.now(),
                **extra,
            )
            for _ in range(n)
        ]
        return ctx.keep(model_name, rows[0])

    return build


BUILDERS: dict[str, Callable[[Ctx, int], object]] = {
    "autopilot.Project": _project,
    "autopilot.ProjectMembership": _membership,
    "autopilot.Event": _event,
    "manager.Proposal": _proposal,
    "manager.FileStat": _file_stat,
    "blueprints.Blueprint": _blueprint,
    "blueprints.IngestionJob": _ingestion,
    "blueprints.PlanNode": _plan_node,
    "blueprints.Task": _task,
    "blueprints.TaskDependency": _dependency,
    "runs.ExecutionRun": _run,
    "runs.ExecutionStep": _step,
    "runs.RunMessage": _message,
    "runs.UsageRecord": _usage,
    "runs.Integration": _integration,
    "runs.TaskReview": _review,
    "auth.User": _user,
    "auth.Group": _group,
    "authtoken.TokenProxy": _token,
    "django_q.Schedule": _schedule,
    "django_q.Success": _q_task(True),
    "django_q.Failure": _q_task(False),
    "django_q.OrmQ": _ormq,
    "axes.AccessAttempt": _axes("AccessAttempt"),
    "axes.AccessFailureLog": _axes("AccessFailureLog"),
    "axes.AccessLog": _axes("AccessLog"),
}

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


def test_every_registered_model_has_a_builder():
    missing = [m._meta.label for m in REGISTERED if m._meta.label not in BUILDERS]
    assert not missing, f"add a builder in tests/core/test_admin.py for: {missing}"


def test_every_domain_model_is_registered():
    domain = [
        Project,
        ProjectMembership,
        Event,
        Proposal,
        Blueprint,
        IngestionJob,
        PlanNode,
        Task,
        TaskDependency,
    ]
    assert [m._meta.label for m in domain if m not in admin.site._registry] == []


def _urls(model, obj, superuser) -> list[str]:
    info = (model._meta.app_label, model._meta.model_name)
    urls = [
        reverse("admin:{}_{}_changelist".format(*info)),
        reverse("admin:{}_{}_change".format(*info), args=[obj.pk]),
    ]
    request = RequestFactory().get("/")
    request.user = superuser
    if admin.site._registry[model].has_add_permission(request):
        urls.append(reverse("admin:{}_{}_add".format(*info)))
    return urls


def _query_counts(client, urls: list[str]) -> dict[str, int]:
    from django.db import connection

    counts = {}
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        counts[url] = len(captured)
    return counts


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=[m._meta.label for m in REGISTERED])
def test_admin_pages_render_with_bounded_queries(
    model, admin_client, admin_user, django_assert_max_num_queries
):
    # Given 3 rows of the model (and of what its change page shows inline)
    ctx = Ctx()
    build = BUILDERS[model._meta.label]
    obj = build(ctx, 3)
    urls = _urls(model, obj, admin_user)
    _query_counts(admin_client, urls)  # warm caches (content types, session)
    # When each page is rendered with 3 rows, then with 10
    small = _query_counts(admin_client, urls)
    build(ctx, 7)
    assert model._default_manager.count() >= 10
    for url in urls:
        with django_assert_max_num_queries(MAX_QUERIES, info=url):
            assert admin_client.get(url).status_code == 200
    large = _query_counts(admin_client, urls)
    # Then the number of queries did not grow with the rows
    assert large == small


@pytest.mark.django_db
def test_blueprint_page_with_thousands_of_nodes_stays_bounded(admin_client):
    # Given a blueprint with more nodes than the inline shows
    from blueprints.admin import PLAN_NODE_INLINE_LIMIT

    blueprint = BlueprintFactory()
    PlanNode.objects.bulk_create(
        PlanNode(
            project=blueprint.project,
            blueprint=blueprint,
            kind="story",
            level=3,
            title=f"Node {i}",
            anchor=f"node-{i}",
            order=i,
            start=i,
            end=i + 1,
            content_hash="0" * 64,
        )
        for i in range(2000)
    )
    # When its change page is opened
    response = admin_client.get(reverse("admin:blueprints_blueprint_change", args=[blueprint.pk]))
    # Then only the first nodes are shown, with a link to all of them
    body = response.content.decode()
    assert response.status_code == 200
    assert "Node 0<" in body and f"Node {PLAN_NODE_INLINE_LIMIT - 1}<" in body
    assert f"Node {PLAN_NODE_INLINE_LIMIT}<" not in body
    assert f"?blueprint__id__exact={blueprint.pk}" in body and "2000 plan node(s)" in body


# --- Actions go through services and name the admin ------------------------------------------


def _run_action(client, model, action: str, pks) -> None:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]})
    assert response.status_code == 302, response.content[:500]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "initial", "field", "expected"),
    [
        ("pause_autopilot", {"paused": False}, "paused", True),
        ("resume_autopilot", {"paused": True}, "paused", False),
        ("set_mode_off", {"autonomy_mode": "full_auto"}, "autonomy_mode", "off"),
        ("set_mode_suggest", {}, "autonomy_mode", "suggest"),
        ("set_mode_semi_auto", {}, "autonomy_mode", "semi_auto"),
        ("set_mode_full_auto", {}, "autonomy_mode", "full_auto"),
    ],
    ids=["pause", "resume", "mode-off", "mode-suggest", "mode-semi_auto", "mode-full_auto"],
)
def test_project_action_records_event_with_admin(admin_client, admin_user, action, initial, field, expected):
    # Given two projects
    projects = [ProjectFactory(**initial), ProjectFactory(**initial)]
    # When the admin runs the action on both
    _run_action(admin_client, Project, action, [p.pk for p in projects])
    # Then each changed through the service, with an event naming the admin
    for project in projects:
        project.refresh_from_db()
        assert getattr(project, field) == expected
        event = Event.objects.get(kind="project.autonomy", subject_id=project.pk)
        assert event.actor == admin_user
        assert event.data["changes"][field]["to"] == expected


@pytest.mark.django_db
def test_task_cancel_action_transitions_and_reports_refusals(admin_client, admin_user):
    # Given a task to do and a task already done (done → cancelled is not allowed)
    todo = TaskFactory()
    done = TaskFactory(project=todo.project, status=Task.Status.DONE)
    # When the admin cancels both
    _run_action(admin_client, Task, "cancel", [todo.pk, done.pk])
    # Then the first is cancelled with an event, the second untouched
    todo.refresh_from_db()
    done.refresh_from_db()
    assert (todo.status, done.status) == (Task.Status.CANCELLED, Task.Status.DONE)
    event = Event.objects.get(kind="task.status", subject_id=todo.pk)
    assert event.actor == admin_user and event.data["from"] == "todo" and event.data["to"] == "cancelled"
    assert not Event.objects.filter(kind="task.status", subject_id=done.pk).exists()


@pytest.mark.django_db
def test_proposal_dismiss_action(admin_client, admin_user):
    proposal = ProposalFactory()
    _run_action(admin_client, Proposal, "dismiss", [proposal.pk])
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.DISMISSED and proposal.decided_by == admin_user
    assert Event.objects.get(kind="proposal.status").actor == admin_user


@pytest.mark.django_db
def test_blueprint_activate_action_supersedes_the_active_version(admin_client):
    old = BlueprintFactory(status=Blueprint.Status.ACTIVE)
    new = BlueprintFactory(project=old.project)
    _run_action(admin_client, Blueprint, "activate", [new.pk])
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, new.status) == (Blueprint.Status.SUPERSEDED, Blueprint.Status.ACTIVE)


@pytest.mark.django_db
def test_status_fields_are_read_only(admin_client):
    # Given a task and a blueprint, when their change forms render, there is no status input
    task = TaskFactory()
    blueprint = BlueprintFactory()
    for url in (
        reverse("admin:blueprints_task_change", args=[task.pk]),
        reverse("admin:blueprints_blueprint_change", args=[blueprint.pk]),
    ):
        body = admin_client.get(url).content.decode()
        assert 'name="status"' not in body
    assert 'name="source_text"' not in body and 'name="version"' not in body


@pytest.mark.django_db
def test_event_log_is_view_only(admin_client, project):
    event = Event.objects.create(project=project, kind="x")
    assert admin_client.get(reverse("admin:autopilot_event_add")).status_code == 403
    response = admin_client.post(reverse("admin:autopilot_event_delete", args=[event.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert Event.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_ingestion_job_is_read_only(admin_client):
    job = IngestionJobFactory()
    assert admin_client.get(reverse("admin:blueprints_ingestionjob_add")).status_code == 403
    body = admin_client.get(reverse("admin:blueprints_ingestionjob_change", args=[job.pk])).content.decode()
    assert 'name="progress"' not in body


# --- Forms go through services -----------------------------------------------------------------


@pytest.mark.django_db
def test_add_project_in_admin_uses_project_create(admin_client, admin_user, tmp_path):
    from tests.gitrepo import make_repo

    repo = make_repo(tmp_path / "repo")
    data = {
        "name": "Admin made",
        "description": "",
        "repo_path": str(repo),
        "subdirectory": "",
        "base_branch": "main",
        "test_command": "pytest",
        "setup_script": "",
        "command_allowlist": "[]",
        "autonomy_mode": "suggest",
        "max_parallel_runs": "2",
        "default_run_budget_usd": "5",
        "daily_budget_usd": "",
        "max_attempts": "3",
        "plan_order_policy": "none",
        "model_matrix": "{}",
        "integration_branch": "team/integration",
        "merge_strategy": "squash",
        "conflict_policy": "agent",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:autopilot_project_add"), data)
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else response
    )
    project = Project.objects.get(name="Admin made")
    assert project.slug == "admin-made" and project.autonomy_mode == "suggest"
    assert (project.integration_branch, project.merge_strategy) == ("team/integration", "squash")
    assert ProjectMembership.objects.get(project=project).user == admin_user
    assert Event.objects.get(kind="project.created").actor == admin_user


@pytest.mark.django_db
def test_add_project_with_bad_repository_shows_the_error(admin_client, tmp_path):
    data = {
        "name": "Nope",
        "repo_path": str(tmp_path),
        "base_branch": "main",
        "command_allowlist": "[]",
        "autonomy_mode": "off",
        "max_parallel_runs": "2",
        "default_run_budget_usd": "5",
        "max_attempts": "3",
        "plan_order_policy": "none",
        "model_matrix": "{}",
        "integration_branch": "team/integration",
        "merge_strategy": "squash",
        "conflict_policy": "agent",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:autopilot_project_add"), data)
    assert response.status_code == 200
    assert "is not a git repository" in response.content.decode()
    assert not Project.objects.filter(name="Nope").exists()


@pytest.mark.django_db
def test_change_project_autonomy_in_form_records_event(admin_client, admin_user, project):
    url = reverse("admin:autopilot_project_change", args=[project.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() if form[name].value() is not None else "" for name in form.fields}
    data.update(
        {
            "autonomy_mode": "semi_auto",
            "description": "New words",
            "paused": "",
            "allow_shell": "",
            "auto_complete_on_tests": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        }
    )
    data["command_allowlist"] = "[]"
    data["model_matrix"] = "{}"
    response = admin_client.post(url, data)
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.autonomy_mode, project.description) == ("semi_auto", "New words")
    autonomy = Event.objects.get(kind="project.autonomy")
    updated = Event.objects.get(kind="project.updated")
    assert autonomy.actor == updated.actor == admin_user
    assert autonomy.data["changes"] == {"autonomy_mode": {"from": "off", "to": "semi_auto"}}


@pytest.mark.django_db
def test_membership_admin_goes_through_membership_set(admin_client, admin_user, project):
    member = get_user_model().objects.create_user("newbie", password="x-long-password-1")
    response = admin_client.post(
        reverse("admin:autopilot_projectmembership_add"),
        {"project": project.pk, "user": member.pk, "role": "operator"},
    )
    assert response.status_code == 302
    assert ProjectMembership.objects.get(user=member).role == "operator"
    event = Event.objects.get(kind="project.membership")
    assert event.actor == admin_user and event.data == {"user": member.pk, "role": "operator"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_matrix", '{"wizard": {"agent": "scripted"}}', "unknown role"),
        ("command_allowlist", '"pytest"', "JSON list of program names"),
        ("max_parallel_runs", "0", "max_parallel_runs must be at least 1."),
    ],
    ids=["bad-matrix", "allowlist-not-a-list", "zero-parallel"],
)
def test_project_form_shows_domain_errors_on_the_field(admin_client, project, field, value, message):
    url = reverse("admin:autopilot_project_change", args=[project.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() if form[name].value() is not None else "" for name in form.fields}
    data.update(
        {
            "command_allowlist": "[]",
            "model_matrix": "{}",
            "paused": "",
            "allow_shell": "",
            "auto_complete_on_tests": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        }
    )
    data[field] = value
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Event.objects.filter(kind__startswith="project.").exists()


@pytest.mark.django_db
def test_membership_inline_changes_roles_and_removes_through_services(admin_client, admin_user, project):
    # Given an owner and a viewer shown in the project's member inline
    keep = MembershipFactory(project=project, role="owner")
    drop = MembershipFactory(project=project, role="viewer")
    url = reverse("admin:autopilot_project_change", args=[project.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() if form[name].value() is not None else "" for name in form.fields}
    data.update(
        {
            "command_allowlist": "[]",
            "model_matrix": "{}",
            "paused": "",
            "allow_shell": "",
            "auto_complete_on_tests": "",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "2",
            "memberships-0-id": str(keep.pk),
            "memberships-0-project": str(project.pk),
            "memberships-0-role": "owner",
            "memberships-1-id": str(drop.pk),
            "memberships-1-project": str(project.pk),
            "memberships-1-role": "operator",
            "memberships-1-DELETE": "on",
        }
    )
    # When the admin deletes the second row
    response = admin_client.post(url, data)
    # Then the removal went through membership_remove, recorded with the admin as actor
    assert response.status_code == 302
    assert list(ProjectMembership.objects.filter(project=project).values_list("pk", flat=True)) == [keep.pk]
    event = Event.objects.get(kind="project.membership")
    assert event.actor == admin_user and event.data == {"user": drop.user_id, "role": None}


# --- Blueprint-app writes go through blueprints.services ----------------------------------------


def _form_data(client, url: str) -> dict:
    form = client.get(url).context["adminform"].form
    return {name: form[name].value() if form[name].value() is not None else "" for name in form.fields}


@pytest.mark.django_db
def test_add_and_edit_task_in_admin_use_the_task_services(admin_client, admin_user, project):
    # When a task is added in the admin
    response = admin_client.post(
        reverse("admin:blueprints_task_add"),
        {
            "project": project.pk,
            "title": "Write docs",
            "body": "",
            "priority": "4",
            "complexity": "2",
            "plan_node": "",
            "dependency_links-TOTAL_FORMS": "0",
            "dependency_links-INITIAL_FORMS": "0",
        },
    )
    # Then task_create made it, with an event naming the admin
    assert response.status_code == 302
    task = Task.objects.get(title="Write docs")
    assert (task.priority, task.complexity, task.created_by) == (4, 2, admin_user)
    assert Event.objects.get(kind="task.created").actor == admin_user
    # And an edit goes through task_update
    url = reverse("admin:blueprints_task_change", args=[task.pk])
    data = _form_data(admin_client, url) | {
        "title": "Write better docs",
        "dependency_links-TOTAL_FORMS": "0",
        "dependency_links-INITIAL_FORMS": "0",
    }
    assert admin_client.post(url, data).status_code == 302
    event = Event.objects.get(kind="task.updated")
    assert event.actor == admin_user and event.data["changes"]["title"]["to"] == "Write better docs"


@pytest.mark.django_db
def test_task_plan_node_of_another_project_is_refused(admin_client, project):
    foreign = PlanNodeFactory()
    response = admin_client.post(
        reverse("admin:blueprints_task_add"),
        {
            "project": project.pk,
            "title": "X",
            "priority": "2",
            "complexity": "3",
            "plan_node": foreign.pk,
            "dependency_links-TOTAL_FORMS": "0",
            "dependency_links-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and "belongs to another project" in response.content.decode()
    assert not Task.objects.filter(title="X").exists()


@pytest.mark.django_db
def test_deleting_a_dependency_uses_dependency_remove(admin_client, admin_user):
    dependency = TaskDependencyFactory()
    url = reverse("admin:blueprints_taskdependency_delete", args=[dependency.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not TaskDependency.objects.exists()
    event = Event.objects.get(kind="task.dependency_removed")
    assert event.actor == admin_user and event.data == {"depends_on": dependency.depends_on_id}


@pytest.mark.django_db
def test_plan_node_actions_and_edits_use_plan_node_update(admin_client, admin_user):
    node = PlanNodeFactory()
    _run_action(admin_client, PlanNode, "mark_done", [node.pk])
    node.refresh_from_db()
    assert node.status == PlanNode.Status.DONE
    status_event = Event.objects.get(kind="plannode.status")
    assert status_event.actor == admin_user and (status_event.data["from"], status_event.data["to"]) == (
        "todo",
        "done",
    )
    url = reverse("admin:blueprints_plannode_change", args=[node.pk])
    assert admin_client.post(url, _form_data(admin_client, url) | {"priority": "5"}).status_code == 302
    assert Event.objects.get(kind="plannode.updated").data["changes"]["priority"] == {"from": 2, "to": 5}


@pytest.mark.django_db
def test_blueprint_title_edit_uses_blueprint_update(admin_client, admin_user):
    blueprint = BlueprintFactory()
    url = reverse("admin:blueprints_blueprint_change", args=[blueprint.pk])
    data = {"title": "Renamed", "nodes-TOTAL_FORMS": "0", "nodes-INITIAL_FORMS": "0"}
    assert admin_client.post(url, data).status_code == 302
    blueprint.refresh_from_db()
    assert blueprint.title == "Renamed" and Event.objects.get(kind="blueprint.updated").actor == admin_user


@pytest.mark.django_db
def test_retry_failed_ingestion_job(admin_client, admin_user):
    from django_q.models import OrmQ

    job = IngestionJobFactory(status=IngestionJob.Status.FAILED, error="boom")
    _run_action(admin_client, IngestionJob, "retry", [job.pk])
    job.refresh_from_db()
    assert (job.status, job.error) == (IngestionJob.Status.QUEUED, "")
    assert Event.objects.get(kind="ingestionjob.status").actor == admin_user
    assert OrmQ.objects.count() == 0  # enqueued on commit only; this test's transaction never commits


@pytest.mark.django_db
def test_proposal_accept_action_starts_a_run(admin_client, admin_user):
    from runs.models import ExecutionRun

    proposal = ProposalFactory(
        task=TaskFactory(status=Task.Status.READY, project=ProjectFactory(autonomy_mode="suggest"))
    )
    _run_action(admin_client, Proposal, "accept", [proposal.pk])
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.ACCEPTED and proposal.decided_by == admin_user
    assert ExecutionRun.objects.get(task=proposal.task).pk == proposal.run_id


@pytest.mark.django_db
def test_accepting_a_dismissed_proposal_is_reported_not_raised(admin_client):
    proposal = ProposalFactory(status=Proposal.Status.DISMISSED)
    url = reverse("admin:manager_proposal_changelist")
    response = admin_client.post(url, {"action": "accept", "_selected_action": [proposal.pk]}, follow=True)
    assert response.status_code == 200
    assert "is dismissed, not pending" in response.content.decode()


@pytest.mark.django_db
def test_project_page_links_to_its_objects_and_the_links_work(admin_client, project):
    import re

    body = admin_client.get(reverse("admin:autopilot_project_change", args=[project.pk])).content.decode()
    links = re.findall(r'href="([^"]+\?project__id__exact=\d+)"', body)
    assert len(links) == 5  # members, blueprints, tasks, runs, events
    for link in links:
        # (a lookup the admin does not allow would redirect to "?e=1" instead)
        assert admin_client.get(link).status_code == 200, link
