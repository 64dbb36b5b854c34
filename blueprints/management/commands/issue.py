"""`autopilot issue list|create|view|edit|…`: the seeds' word for tasks, the same command as `task`."""

from __future__ import annotations

from blueprints.management.commands.task import Command as TaskCommand


class Command(TaskCommand):
    help = "Issues (the same as tasks): list, create, view, edit, delete, ready, next, depend, generate."
