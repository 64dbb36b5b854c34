"""The tick's candidate pick: the best few runnable tasks of every project, in one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autopilot.manager.ranking import ranked_candidates
from blueprints.models import Task
from runs.models import ExecutionRun
from tests.factories import ProjectFactory
from tests.manager.conftest import depend, make_task

pytestmark = pytest.mark.django_db


def test_each_project_gets_its_own_best_candidates_up_to_its_own_limit():
    # Given two projects with ready tasks of mixed priority, learned priority and plan order
    first, second = ProjectFactory(), ProjectFactory()
    low = make_task(first, priority=1, plan_order=0)
    top = make_task(first, priority=4, plan_order=9)
    learned = make_task(first, priority=3, learned_priority=2.5, plan_order=8)
    plain = make_task(first, priority=3, plan_order=1)
    later = make_task(first, priority=3, plan_order=2)
    theirs = [make_task(second, priority=2, plan_order=i) for i in range(4)]
    # When the best 3 of the first and the best 2 of the second are asked for
    with CaptureQueriesContext(connection) as ctx:
        picked = ranked_candidates([first, second], modes={}, limits={first.pk: 3, second.pk: 2})
    # Then each list is best first: priority, then learned priority, then plan order
    assert [c.pk for c in picked[first.pk]] == [top.pk, learned.pk, plain.pk]
    assert [c.pk for c in picked[second.pk]] == [theirs[0].pk, theirs[1].pk]
    assert later.pk not in {c.pk for c in picked[first.pk]} and low.pk not in {c.pk for c in picked[first.pk]}
    # in one statement whatever the number of projects
    assert len(ctx.captured_queries) == 1


def test_tasks_with_an_open_run_or_an_unfinished_dependency_are_not_candidates(project):
    # Given the best task already running, the next one blocked by an unfinished task, and a plain one
    running = make_task(project, priority=5)
    ExecutionRun.objects.create(
        project=project, task=running, prompt="x", agent_backend="scripted", model="scripted"
    )
    blocked = make_task(project, priority=4)
    depend(blocked, make_task(project, status=Task.Status.TODO, priority=0))
    plain = make_task(project, priority=1)
    # When candidates are picked
    picked = ranked_candidates([project], modes={}, limits={project.pk: 5})
    # Then only the plain task is one
    assert [c.pk for c in picked[project.pk]] == [plain.pk]
