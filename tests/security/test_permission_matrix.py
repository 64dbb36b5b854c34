"""The permission matrix: every API endpoint and every page × every kind of user, and every project
field × every role.

Every URL pattern of the API and of the pages must have an entry here (test_every_*_has_an_entry walks
the URL resolver): a new endpoint without one fails. Each entry says who may use it:
- PUBLIC: anyone;
- AUTH: any logged-in user (lists are scoped: a non-member sees none of the project's objects);
- a project role (viewer < operator < owner): anonymous → 401/403 (API) or the login page; a user who
  is not a member (staff included) → 404, never a hint that the project exists; a member below the
  role → 403 naming the role needed; the role or above, and superusers → allowed;
- SITE_TRUST (register a repository): staff, superusers and the register permission;
- OWNER_SOMEWHERE: the owner of at least one project.
The objects are built once per module; each test runs in a transaction rolled back afterwards.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from autopilot.models import Event, Project, Role
from autopilot.permissions import FIELD_ROLES, TRUSTED
from blueprints.models import Blueprint, SummaryJob
from runs import interactive
from runs.models import ExecutionRun, Integration
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
    UserFactory,
    grant_register,
    repo_root_for_tests,
)
from tests.gitrepo import make_repo

PUBLIC, AUTH, SITE_TRUST, OWNER_SOMEWHERE = "public", "auth", "site-trust", "owner-somewhere"
USERS = ("anonymous", "non-member", "viewer", "operator", "owner", "staff", "superuser")
MEMBER_ROLE = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "owner": Role.OWNER}
RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.OWNER: 3}


# --- The world: one project with one of everything, built once per module ---------------------------


@dataclass
class World:
    users: dict[str, Any]
    project: Project
    ids: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        project = ProjectFactory(name="Matrix project", slug="matrix-project")
        users = {"anonymous": None, "non-member": UserFactory(username="m-stranger")}
        for name, role in MEMBER_ROLE.items():
            users[name] = MembershipFactory(project=project, role=role, user__username=f"m-{name}").user
        users["staff"] = UserFactory(username="m-staff", is_staff=True)
        users["superuser"] = UserFactory(username="m-root", is_staff=True, is_superuser=True)
        blueprint = BlueprintFactory(project=project, status=Blueprint.Status.ACTIVE, version=1)
        node = PlanNodeFactory(blueprint=blueprint)
        job = IngestionJobFactory(blueprint=blueprint)
        task, other = TaskFactory(project=project), TaskFactory(project=project)
        dependency = TaskDependencyFactory(task=task, depends_on=other)
        proposal = ProposalFactory(task=task)
        run = ExecutionRunFactory(project=project, status=ExecutionRun.Status.SUCCEEDED)
        second = ExecutionRunFactory(project=project, status=ExecutionRun.Status.SUCCEEDED)
        step = ExecutionStepFactory(run=run)
        session = ExecutionRunFactory(
            project=project, kind="interactive", status=ExecutionRun.Status.SUCCEEDED
        )
        cast = interactive.recording_path(session)
        cast.parent.mkdir(parents=True, exist_ok=True)
        cast.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "$ "]\n')
        event = Event.objects.create(project=project, kind="matrix.test")
        summary_job = SummaryJob.objects.create(project=project)
        merge = IntegrationFactory(project=project, task=other, status=Integration.Status.CONFLICT)
        ids = {
            "project": project.pk,
            "blueprint": blueprint.pk,
            "version": blueprint.version,
            "node": node.pk,
            "job": job.pk,
            "task": task.pk,
            "other_task": other.pk,
            "dependency": dependency.pk,
            "proposal": proposal.pk,
            "run": run.pk,
            "second_run": second.pk,
            "step": step.pk,
            "session": session.pk,
            "event": event.pk,
            "summary_job": summary_job.pk,
            "integration": merge.pk,
            "viewer": users["viewer"].pk,
            "stranger": users["non-member"].pk,
        }
        ids["repo_root"] = str(tmp_path_factory.mktemp("roots"))
    yield World(users=users, project=project, ids=ids)
    cast.unlink(missing_ok=True)
    with django_db_blocker.unblock():
        Project.objects.filter(pk=project.pk).delete()
        get_user_model().objects.filter(username__startswith="m-").delete()


@pytest.fixture
def repo_roots(settings, world):
    settings.AUTOPILOT_REPO_ROOTS = [Path(world.ids["repo_root"])]


# --- The matrix ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str  # URL name
    method: str
    url: Callable[[dict], str]
    access: str  # PUBLIC, AUTH, SITE_TRUST, OWNER_SOMEWHERE or a Role
    body: Callable[[dict], Any] | None = None
    scoped_list: bool = False  # AUTH lists: a non-member sees none of the project's objects

    @property
    def id(self) -> str:
        return f"{self.name}:{self.method}"


def E(name, method, url, access, body=None, scoped_list=False):
    template = url
    return Entry(name, method, lambda ids: template.format(**ids), access, body, scoped_list)


VIEW, OPS, OWN = Role.VIEWER, Role.OPERATOR, Role.OWNER
P = "/api/projects/{project}"

API = [
    E("api-token", "POST", "/api/auth/token/", PUBLIC, lambda ids: {}),
    E("api-root", "GET", "/api/", AUTH),
    E("project-list", "GET", "/api/projects/", AUTH, scoped_list=True),
    E(
        "project-list",
        "POST",
        "/api/projects/",
        SITE_TRUST,
        lambda ids: {"name": "Matrix new", "repo_path": ids["repo_root"] + "/missing"},
    ),
    E("project-detail", "GET", P + "/", VIEW),
    E("project-detail", "PATCH", P + "/", OPS, lambda ids: {"paused": True}),
    E("project-detail", "DELETE", P + "/", OWN),
    E("project-members", "GET", P + "/members/", VIEW),
    E(
        "project-members",
        "POST",
        P + "/members/",
        OWN,
        lambda ids: {"user": ids["stranger"], "role": "viewer"},
    ),
    E("project-remove-member", "DELETE", P + "/members/{viewer}/", OWN),
    E("event-list", "GET", "/api/events/", AUTH, scoped_list=True),
    E("event-detail", "GET", "/api/events/{event}/", VIEW),
    E("manager-plan", "GET", P + "/manager/plan/", VIEW),
    E("manager-learning-metrics", "GET", P + "/learning_metrics/", VIEW),
    E("manager-tick", "POST", P + "/autopilot_tick/", OPS),
    E("manager-refine-plan", "POST", P + "/refine_plan/", OPS),
    E("manager-proposals", "GET", P + "/proposals/", VIEW),
    E("proposal-accept", "POST", "/api/proposals/{proposal}/accept/", OPS),
    E("proposal-dismiss", "POST", "/api/proposals/{proposal}/dismiss/", OPS),
    E("manager-queue", "GET", "/api/queue/", AUTH),
    E("manager-queue-clear", "POST", "/api/queue/clear/", OWNER_SOMEWHERE),
    E("project-blueprints", "GET", P + "/blueprints/", VIEW),
    E("project-blueprints", "POST", P + "/blueprints/", OPS, lambda ids: {"text": "# Phase\n\nWords.\n"}),
    E("project-tasks-ready", "GET", P + "/tasks/ready/", VIEW),
    E("project-search", "GET", P + "/search/?q=phase", VIEW),
    E("project-summaries", "POST", P + "/summaries/", OPS, lambda ids: {}),
    E("summaryjob-detail", "GET", "/api/summary_jobs/{summary_job}/", VIEW),
    E("project-tasks-next", "GET", P + "/tasks/next/", VIEW),
    E("plannode-generate-tasks", "POST", "/api/plan_nodes/{node}/generate_tasks/", OPS),
    E("blueprint-generate-all-tasks", "POST", "/api/blueprints/{blueprint}/generate_all_tasks/", OPS),
    E("task-list", "GET", "/api/tasks/", AUTH, scoped_list=True),
    E(
        "task-list",
        "POST",
        "/api/tasks/",
        OPS,
        lambda ids: {"project": ids["project"], "title": "Matrix task"},
    ),
    E("task-detail", "GET", "/api/tasks/{task}/", VIEW),
    E("task-detail", "PATCH", "/api/tasks/{task}/", OPS, lambda ids: {"title": "Renamed"}),
    E("task-detail", "DELETE", "/api/tasks/{task}/", OPS),
    E("task-dependencies", "GET", "/api/tasks/{task}/dependencies/", VIEW),
    E("task-transition", "POST", "/api/tasks/{task}/transition/", OPS, lambda ids: {"status": "ready"}),
    E("dependency-list", "GET", "/api/dependencies/", AUTH, scoped_list=True),
    E(
        "dependency-list",
        "POST",
        "/api/dependencies/",
        OPS,
        lambda ids: {"task": ids["other_task"], "depends_on": ids["task"]},
    ),
    E("dependency-detail", "GET", "/api/dependencies/{dependency}/", VIEW),
    E("dependency-detail", "DELETE", "/api/dependencies/{dependency}/", OPS),
    E("blueprint-detail", "GET", "/api/blueprints/{blueprint}/", VIEW),
    E("blueprint-detail", "PATCH", "/api/blueprints/{blueprint}/", OPS, lambda ids: {"title": "Renamed"}),
    E("blueprint-diff", "GET", "/api/blueprints/{blueprint}/diff/", VIEW),
    E("blueprint-generate-plan", "POST", "/api/blueprints/{blueprint}/generate_plan/", OPS),
    E("blueprint-nodes", "GET", "/api/blueprints/{blueprint}/nodes/", VIEW),
    E("plannode-detail", "GET", "/api/plan_nodes/{node}/", VIEW),
    E("plannode-detail", "PATCH", "/api/plan_nodes/{node}/", OPS, lambda ids: {"priority": 2}),
    E("ingestionjob-detail", "GET", "/api/ingestion_jobs/{job}/", VIEW),
    E("ingestionjob-retry", "POST", "/api/ingestion_jobs/{job}/retry/", OPS),
    E("project-ingestion-jobs", "GET", P + "/ingestion_jobs/", VIEW),
    E(
        "project-ingestion-jobs",
        "POST",
        P + "/ingestion_jobs/",
        OPS,
        lambda ids: {"text": "# Phase\n\nWords.\n"},
    ),
    E("project-ingestion-job", "GET", P + "/ingestion_jobs/{job}/", VIEW),
    E("project-snapshot", "GET", P + "/snapshot/", VIEW),
    E("project-snapshot-refresh", "POST", P + "/snapshot/refresh/", OPS),
    E("alignment-check", "POST", "/api/alignment/check/", OPS, lambda ids: {"run": ids["run"]}),
    E("project-runs", "GET", P + "/runs/", VIEW),
    E("project-runs", "POST", P + "/runs/", OPS, lambda ids: {"prompt": "hello", "agent": "scripted"}),
    E(
        "run-import",
        "POST",
        "/api/runs/import/",
        OPS,
        lambda ids: {"project": ids["project"], "trajectory": {}},
    ),
    E("run-compare", "GET", "/api/runs/compare/?a={run}&b={second_run}", VIEW),
    E("run-export", "GET", "/api/runs/{run}/export/", VIEW),
    E("run-analysis", "GET", "/api/runs/{run}/analysis/", VIEW),
    E("run-list", "GET", "/api/runs/", AUTH, scoped_list=True),
    E("run-detail", "GET", "/api/runs/{run}/", VIEW),
    *(
        E(f"run-{action}", "POST", f"/api/runs/{{run}}/{action}/", OPS, lambda ids: {"step": 1, "body": "hi"})
        for action in (
            *("advance", "approve", "message", "reject", "resume", "retry", "rollback", "stop"),
            *("takeover", "handback"),
        )
    ),
    E("step-detail", "GET", "/api/steps/{step}/", VIEW),
    E("step-rollback", "POST", "/api/steps/{step}/rollback/", OPS),
    E("project-integration", "GET", P + "/integration/", VIEW),
    E("project-integrations", "GET", P + "/integrations/", VIEW),
    E("integration-detail", "GET", P + "/integrations/{integration}/", VIEW),
    E("integration-retry", "POST", P + "/integrations/{integration}/retry/", OPS),
    E("integration-skip", "POST", P + "/integrations/{integration}/skip/", OPS, lambda ids: {"reason": "r"}),
    E("integration-resolve", "POST", P + "/integrations/{integration}/resolve/", OPS),
    E("task-review", "POST", "/api/tasks/{task}/review/", OPS, lambda ids: {"decision": "rejected"}),
    E("task-pr-body", "GET", "/api/tasks/{task}/pr_body/", VIEW),
]

PAGES = [
    E("healthz", "GET", "/healthz", PUBLIC),
    E("login", "GET", "/accounts/login/", PUBLIC),
    E("logout", "POST", "/accounts/logout/", PUBLIC),
    E("schema", "GET", "/api/schema/", PUBLIC),
    E("api-docs", "GET", "/api/docs/", PUBLIC),
    E("dashboard", "GET", "/", AUTH),
    E("dashboard-page", "GET", "/dashboard/", AUTH),
    E("needs-input", "GET", "/needs-input/", AUTH),
    E("projects", "GET", "/projects/", AUTH),
    E(
        "projects",
        "POST",
        "/projects/",
        SITE_TRUST,
        lambda ids: {"name": "Matrix web", "repo_path": ids["repo_root"] + "/missing"},
    ),
    E("project-branch-hint", "GET", "/projects/branch/?repo_path=/tmp", AUTH),
    E("project-remove", "POST", "/projects/{project}/remove/", OWN),
    E("manager-autonomy", "GET", "/projects/{project}/manager/autonomy/", VIEW),
    E("project-detail", "GET", "/projects/{project}/", VIEW),
    E("project-snapshot-refresh-web", "POST", "/projects/{project}/snapshot/refresh/", OPS),
    E("manager-page", "GET", "/projects/{project}/manager/", VIEW),
    E("manager-autonomy", "POST", "/projects/{project}/manager/autonomy/", OPS, lambda ids: {"paused": "1"}),
    E("manager-tick-now", "POST", "/projects/{project}/manager/tick/", OPS),
    E("manager-queue-clear-web", "POST", "/projects/{project}/manager/queue/clear/", OWN),
    E("manager-proposal-accept", "POST", "/manager/proposals/{proposal}/accept/", OPS),
    E("manager-proposal-dismiss", "POST", "/manager/proposals/{proposal}/dismiss/", OPS),
    E("blueprint-versions", "GET", "/projects/{project}/blueprints/", VIEW),
    E(
        "blueprint-ingest",
        "POST",
        "/projects/{project}/blueprints/ingest/",
        OPS,
        lambda ids: {"text": "# P\n"},
    ),
    E("blueprint-job", "GET", "/projects/{project}/blueprints/jobs/{job}/", VIEW),
    E("blueprint-diff", "GET", "/projects/{project}/blueprints/v{version}/", VIEW),
    E("plan-tree", "GET", "/projects/{project}/plan/", VIEW),
    E("plan-pin", "POST", "/projects/{project}/plan/pin/", OWN, lambda ids: {"pin": f"{ids['node']}:on"}),
    E("plan-search", "GET", "/projects/{project}/plan/search/?q=phase", VIEW),
    E("task-board", "GET", "/projects/{project}/tasks/", VIEW),
    E("task-new", "GET", "/projects/{project}/tasks/new/", OPS),
    E("task-new", "POST", "/projects/{project}/tasks/new/", OPS, lambda ids: {"title": "Matrix page task"}),
    E("task-generate", "POST", "/projects/{project}/tasks/generate/", OPS),
    E("task-detail", "GET", "/projects/{project}/tasks/{task}/", VIEW),
    E("task-edit", "POST", "/projects/{project}/tasks/{task}/edit/", OPS, lambda ids: {"title": "Edited"}),
    E(
        "task-transition",
        "POST",
        "/projects/{project}/tasks/{task}/transition/",
        OPS,
        lambda ids: {"status": "ready"},
    ),
    E("task-delete", "POST", "/projects/{project}/tasks/{task}/delete/", OPS),
    E(
        "task-dependency-add",
        "POST",
        "/projects/{project}/tasks/{other_task}/dependencies/",
        OPS,
        lambda ids: {"depends_on": ids["task"]},
    ),
    E(
        "task-dependency-remove",
        "POST",
        "/projects/{project}/tasks/{task}/dependencies/{dependency}/remove/",
        OPS,
    ),
    E("run-list", "GET", "/projects/{project}/runs/", VIEW),
    E(
        "run-list",
        "POST",
        "/projects/{project}/runs/",
        OPS,
        lambda ids: {"prompt": "hello", "agent": "scripted"},
    ),
    E("run-detail", "GET", "/runs/{run}/", VIEW),
    E("sessions", "GET", "/sessions/", AUTH),
    E("sessions-compare", "GET", "/sessions/compare/?run={run}&run={second_run}", VIEW),
    E("usage", "GET", "/usage/", AUTH),
    E("run-launch", "GET", "/runs/new/", AUTH),
    E(
        "run-launch",
        "POST",
        "/runs/new/",
        OPS,
        lambda ids: {"project": ids["project"], "prompt": "hello", "agent": "scripted"},
    ),
    E("run-replay", "GET", "/runs/{run}/replay/", VIEW),
    E("run-recording", "GET", "/runs/{session}/recording.cast", VIEW),
    E("run-step-rollback", "POST", "/runs/{run}/steps/{step}/rollback/", OPS),
    E("run-action", "POST", "/runs/{run}/stop/", OPS),
    E("integration-page", "GET", "/projects/{project}/integration/", VIEW),
    E("integration-diff", "GET", "/projects/{project}/integration/diff/", VIEW),
    E(
        "integration-settings",
        "POST",
        "/projects/{project}/integration/settings/",
        OWN,
        lambda ids: {"integration_branch": "autopilot/integration", "merge_strategy": "merge"},
    ),
    E("integration-action", "POST", "/projects/{project}/integration/{integration}/retry/", OPS),
    E("task-integration", "GET", "/projects/{project}/tasks/{task}/integration/", VIEW),
    E(
        "task-review-web",
        "POST",
        "/projects/{project}/tasks/{task}/review/",
        OPS,
        lambda ids: {"decision": "rejected"},
    ),
    E("task-interactive", "POST", "/projects/{project}/tasks/{task}/interactive/", OPS),
]


# --- Every URL pattern has an entry ----------------------------------------------------------------


def _patterns(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def _api_methods(pattern: URLPattern) -> set[str]:
    callback = pattern.callback
    if getattr(callback, "actions", None):
        allowed = set(callback.cls.http_method_names) - {"head", "options"}  # DRF adds "head" on first GET
        return {method.upper() for method in callback.actions if method in allowed}
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    names = getattr(view_class, "http_method_names", [])
    return {m.upper() for m in names if m not in ("options", "head") and hasattr(view_class, m)}


def test_every_api_endpoint_has_an_entry():
    declared = {(entry.name, entry.method) for entry in API}
    found = set()
    for route, pattern in _patterns(get_resolver().url_patterns):
        if route.startswith("api/") and pattern.name not in ("schema", "api-docs"):
            found |= {(pattern.name, method) for method in _api_methods(pattern)}
    assert found - declared == set(), "API endpoints without a permission matrix entry"
    assert declared - found == set(), "matrix entries for endpoints that no longer exist"


def test_every_page_has_an_entry():
    declared = {entry.name for entry in PAGES}
    found = {
        pattern.name
        for route, pattern in _patterns(get_resolver().url_patterns)
        if not route.startswith(("api/", "admin/")) or pattern.name in ("schema", "api-docs")
    }
    assert found - declared == set(), "pages without a permission matrix entry"
    assert declared - found == set(), "matrix entries for pages that no longer exist"


# --- Who gets what ---------------------------------------------------------------------------------


def expected(access: str, who: str) -> str:
    """ "allowed", "login" (anonymous refused), "not-found" or "forbidden"."""
    if access == PUBLIC:
        return "allowed"
    if who == "anonymous":
        return "login"
    if access == AUTH or who == "superuser":
        return "allowed"
    if access == SITE_TRUST:
        return "allowed" if who == "staff" else "forbidden"
    if access == OWNER_SOMEWHERE:
        return "allowed" if who == "owner" else "forbidden"
    if who in ("non-member", "staff"):
        return "not-found"
    return "allowed" if RANK[MEMBER_ROLE[who]] >= RANK[Role(access)] else "forbidden"


ROLE_WORDS = {
    Role.VIEWER: "viewer role",
    Role.OPERATOR: "operator role",
    Role.OWNER: "owner role",
    SITE_TRUST: "register repositories",
    OWNER_SOMEWHERE: "owner role",
}


def _request(entry: Entry, world: World, who: str, *, api: bool):
    user = world.users[who]
    client = APIClient() if api else Client()
    if user is not None:
        client.force_login(user)
    url = entry.url(world.ids)
    body = entry.body(world.ids) if entry.body else None
    call = getattr(client, entry.method.lower())
    if api:
        return call(url, body, format="json") if body is not None else call(url)
    return call(url, body or {})


def _check(entry: Entry, world: World, who: str, response, *, api: bool) -> None:
    outcome = expected(entry.access, who)
    text = response.content.decode(errors="replace")
    where = f"{entry.method} {entry.url(world.ids)} as {who}: {response.status_code} {text[:300]}"
    assert response.status_code < 500 or (entry.name == "healthz" and response.status_code == 503), where
    if outcome == "login":
        if api:
            assert response.status_code in (401, 403), where
        else:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], where
    elif outcome == "not-found":
        assert response.status_code == 404, where
        assert world.project.name not in text, where
    elif outcome == "forbidden":
        assert response.status_code == 403, where
        assert ROLE_WORDS[entry.access] in text, where
    else:
        assert response.status_code not in (401, 403, 404), where
        if entry.method == "GET" and entry.name != "healthz":
            assert response.status_code == 200, where
        if entry.scoped_list and who in ("non-member", "staff"):
            data = json.loads(text)
            rows = data["results"] if isinstance(data, dict) else data
            assert rows == [], where


def _cases(entries):
    """Public entries are checked once (anonymous): if a stranger may, everyone may."""
    return [
        pytest.param(entry, who, id=f"{entry.id}-{who}")
        for entry in entries
        for who in (("anonymous",) if entry.access == PUBLIC else USERS)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("entry", "who"), _cases(API))
def test_api(world, repo_roots, entry, who):
    _check(entry, world, who, _request(entry, world, who, api=True), api=True)


@pytest.mark.django_db
@pytest.mark.parametrize(("entry", "who"), _cases(PAGES))
def test_page(world, repo_roots, entry, who):
    _check(entry, world, who, _request(entry, world, who, api=False), api=False)


# --- Field by field: PATCH /api/projects/<id>/ ------------------------------------------------------

FIELD_VALUES = {
    "paused": True,
    "active_phase": None,  # filled with the world's plan node
    "name": "Matrix renamed",
    "description": "New words",
    "base_branch": "main-2",
    "autonomy_mode": "full_auto",
    "max_parallel_runs": 7,
    "default_run_budget_usd": "3.5",
    "daily_budget_usd": "99999",
    "max_attempts": 9,
    "auto_complete_on_tests": True,
    "plan_order_policy": "phases",
    "model_matrix": {"code": {"agent": "scripted", "model": "m"}},
    "context_budget_tokens": 4000,
    "repo_path": None,  # a fresh repository under the configured root
    "subdirectory": "src",
    "setup_script": "make deps",
    "test_command": "pytest -q",
    "command_allowlist": ["pytest"],
    "allow_shell": True,
    "setup_network": True,
    "integration_branch": "autopilot/merged",
    "merge_strategy": "squash",
    "review_required": True,
    "conflict_policy": "human",
    "push_task_branches": True,
    "integration_test_command": "pytest -q tests",
    "integration_remote": None,  # a bare repository (a local path)
}
FIELD_USERS = ("non-member", "viewer", "operator", "owner", "trusted-owner", "staff", "superuser")


def test_every_project_field_is_in_the_matrix():
    assert set(FIELD_VALUES) | {"members"} == set(FIELD_ROLES)


def field_expected(needed: str, who: str) -> int:
    if who in ("non-member", "staff"):
        return 404
    if who == "superuser":
        return 200
    role = {"trusted-owner": Role.OWNER}.get(who) or MEMBER_ROLE[who]
    if needed == TRUSTED:
        return 200 if who == "trusted-owner" else 403
    return 200 if RANK[role] >= RANK[Role(needed)] else 403


@pytest.fixture
def field_world(world, settings, tmp_path):
    """A project whose repository has a second branch and a src/ directory; a trusted owner."""
    project = world.project
    subprocess.run(["git", "-C", project.repo_path, "branch", "-f", "main-2"], check=True)
    (Path(project.repo_path) / "src").mkdir(exist_ok=True)
    settings.AUTOPILOT_REPO_ROOTS = [tmp_path.resolve(), repo_root_for_tests().resolve()]
    users = dict(world.users)
    users["trusted-owner"] = grant_register(MembershipFactory(project=project, role="owner").user)
    moved = str(make_repo(tmp_path / "moved"))
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    values = {
        **FIELD_VALUES,
        "active_phase": world.ids["node"],
        "repo_path": moved,
        "integration_remote": str(remote),
    }
    return users, values


@pytest.mark.django_db
@pytest.mark.parametrize("who", FIELD_USERS)
@pytest.mark.parametrize("name", list(FIELD_VALUES))
def test_field(world, field_world, name, who):
    users, values = field_world
    before = Project.objects.get(pk=world.project.pk)
    client = APIClient()
    client.force_authenticate(users[who])
    response = client.patch(f"/api/projects/{world.project.pk}/", {name: values[name]}, format="json")
    want = field_expected(FIELD_ROLES[name], who)
    assert response.status_code == want, response.content
    after = Project.objects.get(pk=world.project.pk)
    changed = getattr(after, f"{name}_id" if name == "active_phase" else name) != getattr(
        before, f"{name}_id" if name == "active_phase" else name
    )
    assert changed == (want == 200), f"{name} as {who}: changed={changed}"
    if want == 403:
        detail = response.json()["detail"]
        assert f"Changing {name}" in detail or "This needs the operator role" in detail, detail
