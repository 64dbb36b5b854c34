"""Helpers for manager tests: small task graphs in a project."""

from __future__ import annotations

import pytest

from autopilot.services import project_update_autonomy
from blueprints.models import Task
from tests.factories import TaskDependencyFactory, TaskFactory


def make_task(project, **kwargs) -> Task:
    kwargs.setdefault("status", Task.Status.READY)
    return TaskFactory(project=project, **kwargs)


def depend(task: Task, on: Task) -> None:
    TaskDependencyFactory(task=task, depends_on=on)


def set_mode(project, mode: str, **more):
    return project_update_autonomy(project=project, autonomy_mode=mode, **more)


@pytest.fixture
def full_auto(project):
    return set_mode(project, "full_auto")
