"""The task pages through the Django test client: board (filters, counts, pagination, htmx partials),
task detail with its dependency view, create / edit / transition, dependency add/remove with errors."""

from __future__ import annotations

import pytest
from django.urls import reverse

from blueprints.graph import generate_tasks
from blueprints.models import Task, TaskDependency
from tests.blueprints.graph_helpers import build_plan
from tests.blueprints.test_graph import SPEC
from tests.factories import ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def test_board_shows_columns_with_counts_and_filters_by_plan_node_and_status(operator_client, project):
    # given a generated plan
    blueprint = build_plan(project, SPEC)
    generate_tasks(blueprint=blueprint)
    Task.objects.filter(project=project, title="Authentication").update(status=Task.Status.IN_PROGRESS)
    phase_2 = blueprint.nodes.get(title="Phase 2: Billing")

    # when the board is opened
    page = operator_client.get(reverse("task-board", args=[project.pk]))

    # then every status has a column with its count, and the tasks are on their columns
    html = page.content.decode()
    assert page.status_code == 200
    assert '<p class="muted" id="board-total">8 tasks</p>' in html
    assert 'id="column-todo"' in html and 'id="column-in_progress"' in html
    assert "Authentication" in html and "Phase 2: Billing" in html  # task and plan-node filter option

    # and when filtered by a plan node (its subtree) and a status through htmx, only the board partial
    # comes back
    page = operator_client.get(
        reverse("task-board", args=[project.pk]),
        {"plan_node": phase_2.pk, "status": "todo"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="board",
    )
    html = page.content.decode()
    assert "<html" not in html and 'id="board"' in html
    assert "Invoice generation" in html and "Reporting" in html
    assert "Payment processing" not in html  # done, filtered out by status
    assert "Authentication" not in html  # another phase
    assert 'id="column-done"' not in html


def test_board_paginates_each_column(operator_client, project):
    # given more tasks than a column shows
    Task.objects.bulk_create([Task(project=project, title=f"Bulk {i:03}", plan_order=i) for i in range(120)])

    # when the board is opened
    html = operator_client.get(reverse("task-board", args=[project.pk])).content.decode()

    # then a column shows its first 50 with a "load more" for the rest
    assert html.count('class="task-card') == 50
    assert "column=todo&amp;offset=50" in html

    # and the next page comes as a fragment
    more = operator_client.get(
        reverse("task-board", args=[project.pk]), {"column": "todo", "offset": 100}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert more.count('class="task-card') == 20 and "Bulk 100" in more and "Load more" not in more


def test_task_detail_shows_upstream_and_downstream(operator_client, project):
    # given a task in the middle of a chain
    schema, api, ui = (TaskFactory(project=project, title=t) for t in ("Schema", "API", "UI"))
    TaskDependency.objects.create(task=api, depends_on=schema)
    TaskDependency.objects.create(task=ui, depends_on=api)

    # when its page is opened
    html = operator_client.get(reverse("task-detail", args=[project.pk, api.pk])).content.decode()

    # then its dependency view lists both directions with statuses
    upstream = html[html.index('id="upstream"') : html.index('id="downstream"')]
    downstream = html[html.index('id="downstream"') :]
    # (match the task links: a bare "UI" could occur by chance in the form's CSRF token)
    assert f"#{schema.pk} Schema</a>" in upstream and f"#{ui.pk} UI</a>" not in upstream
    assert f"#{ui.pk} UI</a>" in downstream
    assert "Waiting for 1 of 1 dependency" in html


def test_adding_a_dependency_that_closes_a_cycle_shows_the_cycle(operator_client, project):
    # given A depends on B
    a, b = TaskFactory(project=project, title="Alpha"), TaskFactory(project=project, title="Beta")
    TaskDependency.objects.create(task=a, depends_on=b)

    # when B is made to depend on A through the htmx form
    page = operator_client.post(
        reverse("task-dependency-add", args=[project.pk, b.pk]),
        {"depends_on": str(a.pk)},
        HTTP_HX_REQUEST="true",
    )

    # then the dependencies partial comes back with the cycle named, and nothing was added
    html = page.content.decode()
    assert page.status_code == 400 and "<html" not in html
    assert f"This dependency would create a cycle: Beta (#{b.pk}) → Alpha (#{a.pk}) → Beta (#{b.pk})." in html
    assert TaskDependency.objects.count() == 1

    # and a valid add then a remove work
    c = TaskFactory(project=project, title="Gamma")
    page = operator_client.post(
        reverse("task-dependency-add", args=[project.pk, b.pk]),
        {"depends_on": f"#{c.pk}"},
        HTTP_HX_REQUEST="true",
    )
    assert page.status_code == 200 and "Gamma" in page.content.decode()
    dep = TaskDependency.objects.get(task=b, depends_on=c)
    page = operator_client.post(
        reverse("task-dependency-remove", args=[project.pk, b.pk, dep.pk]), HTTP_HX_REQUEST="true"
    )
    assert page.status_code == 200 and not TaskDependency.objects.filter(pk=dep.pk).exists()


def test_create_edit_transition_and_delete_through_the_forms(operator_client, project):
    # when a task is created through the form
    page = operator_client.post(
        reverse("task-new", args=[project.pk]),
        {"title": "Write docs", "body": "All", "priority": 4, "complexity": 2, "plan_node": ""},
    )
    task = Task.objects.get(title="Write docs")
    assert page.status_code == 302 and page.url == reverse("task-detail", args=[project.pk, task.pk])

    # and edited, moved to in progress, and deleted
    operator_client.post(
        reverse("task-edit", args=[project.pk, task.pk]),
        {"title": "Write all docs", "body": "", "priority": 5, "complexity": 3, "plan_node": ""},
    )
    operator_client.post(reverse("task-transition", args=[project.pk, task.pk]), {"status": "in_progress"})
    task.refresh_from_db()
    assert (task.title, task.priority, task.status) == ("Write all docs", 5, "in_progress")
    page = operator_client.post(reverse("task-delete", args=[project.pk, task.pk]))
    assert page.status_code == 400 and "is in progress" in page.content.decode()
    operator_client.post(reverse("task-transition", args=[project.pk, task.pk]), {"status": "cancelled"})
    page = operator_client.post(reverse("task-delete", args=[project.pk, task.pk]))
    assert page.status_code == 302 and not Task.objects.filter(pk=task.pk).exists()

    # and bad input gets a clear error
    page = operator_client.post(
        reverse("task-new", args=[project.pk]), {"title": "X", "priority": 9, "complexity": 2}
    )
    assert page.status_code == 400 and "less than or equal to 5" in page.content.decode()


def test_viewers_read_but_cannot_write_and_strangers_see_nothing(client, project, viewer):
    task = TaskFactory(project=project, title="Secret plan")
    client.force_login(viewer)
    assert client.get(reverse("task-board", args=[project.pk])).status_code == 200
    assert (
        "Add dependency"
        not in client.get(reverse("task-detail", args=[project.pk, task.pk])).content.decode()
    )
    assert (
        client.post(
            reverse("task-new", args=[project.pk]), {"title": "x", "priority": 1, "complexity": 1}
        ).status_code
        == 403
    )

    client.force_login(UserFactory())
    assert client.get(reverse("task-board", args=[project.pk])).status_code == 404
    assert client.get(reverse("task-detail", args=[project.pk, task.pk])).status_code == 404
    other = ProjectFactory()
    assert client.get(reverse("task-board", args=[other.pk])).status_code == 404
