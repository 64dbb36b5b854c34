"""REST: tasks CRUD with filters, transitions, dependencies (cycle named), ready / next, generation —
over real HTTP semantics through DRF's test client, with project roles."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from autopilot.models import PlanOrderPolicy
from blueprints.models import Task, TaskDependency
from tests.blueprints.graph_helpers import build_plan
from tests.blueprints.test_graph import SPEC
from tests.factories import ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(operator):
    client = APIClient()
    client.force_authenticate(operator)
    return client


def test_create_read_update_delete_a_task(api, project):
    # when a task is created
    response = api.post(
        "/api/tasks/", {"project": project.pk, "title": "Write docs", "priority": 4}, format="json"
    )

    # then it comes back with its id
    assert response.status_code == 201, response.json()
    task_id = response.json()["id"]
    assert response.json()["status"] == "todo" and response.json()["priority"] == 4

    # and it can be read, patched and deleted
    assert api.get(f"/api/tasks/{task_id}/").json()["title"] == "Write docs"
    patched = api.patch(f"/api/tasks/{task_id}/", {"title": "Write all docs", "complexity": 7}, format="json")
    assert patched.status_code == 200 and patched.json()["complexity"] == 7
    assert api.delete(f"/api/tasks/{task_id}/").status_code == 204
    assert not Task.objects.filter(pk=task_id).exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"title": "x", "priority": 9}, "priority must be from 0 to 5"),
        ({"title": "x", "complexity": 0}, "complexity must be from 1 to 10"),
        ({"title": "   "}, "title"),
    ],
    ids=["priority", "complexity", "blank-title"],
)
def test_bad_task_input_is_a_400_naming_the_problem(api, project, payload, message):
    response = api.post("/api/tasks/", {"project": project.pk, **payload}, format="json")
    assert response.status_code == 400
    assert message in str(response.json())


def test_the_status_is_changed_by_a_transition_not_a_patch(api, project):
    task = TaskFactory(project=project)
    response = api.patch(f"/api/tasks/{task.pk}/", {"status": "done"}, format="json")
    assert response.status_code == 400 and "transition" in response.json()["detail"]

    response = api.post(
        f"/api/tasks/{task.pk}/transition/", {"status": "in_progress", "reason": "starting"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "in_progress"
    response = api.post(f"/api/tasks/{task.pk}/transition/", {"status": "in_progress"}, format="json")
    assert (
        response.status_code == 409
        and "cannot go from 'in_progress' to 'in_progress'" in response.json()["detail"]
    )


def test_filters(api, project):
    # given tasks of various statuses and priorities, and a task of another project
    blueprint = build_plan(project, SPEC)
    from blueprints.graph import generate_tasks

    generate_tasks(blueprint=blueprint)
    Task.objects.filter(project=project, title="Reporting").update(priority=5, needs_review=True)
    TaskFactory(project=ProjectFactory(), title="Elsewhere")
    phase_1 = blueprint.nodes.get(title="Phase 1: Foundations")
    url = "/api/tasks/"

    def titles(**params):
        response = api.get(url, {"project": project.pk, "limit": 500, **params})
        assert response.status_code == 200
        return {t["title"] for t in response.json()["results"]}

    # then each filter narrows the list
    assert len(titles()) == 8
    assert titles(status="done") == {"Create the repository", "Payment processing"}
    assert titles(plan_node=phase_1.pk) == {
        "Set up CI pipeline",
        "Create the repository",
        "Database schema",
        "Authentication",
        "API skeleton",
    }
    assert titles(min_priority=5) == {"Reporting"} == titles(priority=5)
    assert titles(needs_review="true") == {"Reporting"}
    assert "Reporting" not in titles(max_priority=4)
    assert api.get(url, {"status": "nonsense"}).status_code == 400


def test_dependencies_create_filter_delete_and_cycle(api, project):
    # given two tasks
    a, b = TaskFactory(project=project, title="Alpha"), TaskFactory(project=project, title="Beta")

    # when Alpha is made to depend on Beta
    response = api.post("/api/dependencies/", {"task": a.pk, "depends_on": b.pk}, format="json")
    assert response.status_code == 201, response.json()
    dep_id = response.json()["id"]
    assert response.json()["depends_on_title"] == "Beta"

    # then it can be listed by task, and the reverse is refused naming the cycle
    listed = api.get("/api/dependencies/", {"task": a.pk}).json()["results"]
    assert [d["id"] for d in listed] == [dep_id]
    response = api.post("/api/dependencies/", {"task": b.pk, "depends_on": a.pk}, format="json")
    assert response.status_code == 400
    assert (
        response.json()["detail"]
        == f"This dependency would create a cycle: Beta (#{b.pk}) → Alpha (#{a.pk}) → Beta (#{b.pk})."
    )
    assert response.json()["extra"]["cycle"] == [b.pk, a.pk, b.pk]

    # and self / cross-project dependencies are refused
    assert (
        "cannot depend on itself"
        in api.post("/api/dependencies/", {"task": a.pk, "depends_on": a.pk}, format="json").json()["detail"]
    )
    stranger_task = TaskFactory(project=ProjectFactory())
    assert (
        api.post(
            "/api/dependencies/", {"task": a.pk, "depends_on": stranger_task.pk}, format="json"
        ).status_code
        == 404
    )

    # and the task's dependency view shows both directions
    view = api.get(f"/api/tasks/{b.pk}/dependencies/").json()
    assert view["downstream"][0]["task"] == a.pk and view["ready"] is True

    # and the dependency can be deleted
    assert api.delete(f"/api/dependencies/{dep_id}/").status_code == 204
    assert not TaskDependency.objects.exists()


def test_ready_and_next(api, project):
    # given a done task, a task waiting for an unfinished one, and two free tasks
    done = TaskFactory(project=project, status=Task.Status.DONE, title="Done")
    blocker = TaskFactory(project=project, title="Blocker", priority=1)
    waiting = TaskFactory(project=project, title="Waiting", priority=5)
    TaskDependency.objects.create(task=waiting, depends_on=blocker)
    best = TaskFactory(project=project, title="Best", priority=4)
    TaskDependency.objects.create(task=best, depends_on=done)

    # when ready and next are asked for
    ready = api.get(f"/api/projects/{project.pk}/tasks/ready/").json()
    nxt = api.get(f"/api/projects/{project.pk}/tasks/next/").json()

    # then ready lists the tasks whose dependencies are all done, best first; next gives the best and why
    assert [t["title"] for t in ready["results"]] == ["Best", "Blocker"]
    assert nxt["task"]["title"] == "Best"
    assert "highest priority (P4)" in nxt["reason"] and "its 1 dependency is done" in nxt["reason"]

    # and when nothing is ready, a 404 with the reason
    empty = ProjectFactory()
    from autopilot.models import ProjectMembership

    ProjectMembership.objects.create(project=empty, user=api.handler._force_user, role="viewer")
    response = api.get(f"/api/projects/{empty.pk}/tasks/next/")
    assert response.status_code == 404 and response.json()["task"] is None
    assert "no tasks yet" in response.json()["detail"]


def test_generation_endpoints_are_idempotent(api, project):
    # given an ingested spec without tasks
    project.plan_order_policy = PlanOrderPolicy.PHASES
    project.save()
    blueprint = build_plan(project, SPEC)
    phase_2 = blueprint.nodes.get(title="Phase 2: Billing")

    # when one node's tasks are generated, then the whole blueprint's, twice
    node = api.post(f"/api/plan_nodes/{phase_2.pk}/generate_tasks/").json()
    first = api.post(f"/api/blueprints/{blueprint.pk}/generate_all_tasks/").json()
    second = api.post(f"/api/blueprints/{blueprint.pk}/generate_all_tasks/").json()

    # then the counts add up and the second run creates nothing
    assert node["tasks_created"] == 3
    assert first["tasks_created"] == 6  # the 5 tasks of phase 1 and the phase-1 milestone
    assert (second["tasks_created"], second["dependencies_created"]) == (0, 0)
    assert second["tasks_total"] == 9 == Task.objects.filter(project=project).count()


def test_roles_viewers_read_operators_write_strangers_get_404(project, viewer):
    task = TaskFactory(project=project)
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get(f"/api/tasks/{task.pk}/").status_code == 200
    assert client.patch(f"/api/tasks/{task.pk}/", {"title": "x"}, format="json").status_code == 403
    assert client.post("/api/tasks/", {"project": project.pk, "title": "x"}, format="json").status_code == 403
    assert (
        client.post(f"/api/tasks/{task.pk}/transition/", {"status": "done"}, format="json").status_code == 403
    )

    client.force_authenticate(UserFactory())
    assert client.get(f"/api/tasks/{task.pk}/").status_code == 404
    assert client.get("/api/tasks/").json()["results"] == []
    assert client.get(f"/api/projects/{project.pk}/tasks/ready/").status_code == 404
    assert client.post("/api/tasks/", {"project": project.pk, "title": "x"}, format="json").status_code == 404

    client.logout()
    client.force_authenticate(None)
    assert client.get("/api/tasks/").status_code in (401, 403)
