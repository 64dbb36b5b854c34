"""The local shell user of the CLI, and each user's default project.

Trust model (DESIGN.md §4): whoever runs `autopilot` in a shell on the server's machine can read its
database and data directory, so the CLI trusts them like the server itself. Rather than acting as
nobody (`actor=None`), the CLI acts as the *local account*: the Django user named after the OS user
(`AUTOPILOT_LOCAL_USER` overrides the name). It is created on first use as a superuser with an
unusable password (so it cannot log in to the web until `autopilot user password NAME`), and its
creation is recorded as a `user.created` event with `"local": true`. An existing account of that name
is used as it is, with its own rights. `--user X` acts as X, with exactly X's rights.
"""

from __future__ import annotations

import getpass
import os
import re

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from autopilot.events import record_event
from autopilot.models import DefaultProject, Project


def local_username() -> str:
    name = os.environ.get("AUTOPILOT_LOCAL_USER", "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = ""
    name = re.sub(r"[^\w.@+-]", "_", name)[:150]
    return name or "local"


def local_account():
    """The local shell user's account, created on first use (see the module docstring)."""
    User = get_user_model()
    username = local_username()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user
    try:
        with transaction.atomic():
            user = User(username=username, is_superuser=True, is_staff=False)
            user.set_unusable_password()
            user.save()
            record_event(
                kind="user.created",
                actor=None,
                data={"user": user.pk, "username": username, "superuser": True, "local": True},
            )
    except IntegrityError:  # another command created it at the same moment
        user = User.objects.get(username=username)
    return user


@transaction.atomic
def default_project_set(*, user, project: Project | None) -> None:
    """Make `project` the user's default project for the CLI (None: no default). Records an event."""
    if project is None:
        DefaultProject.objects.filter(user=user).delete()
    else:
        DefaultProject.objects.update_or_create(user=user, defaults={"project": project})
    record_event(
        kind="project.default",
        subject=project,
        actor=user,
        data={"user": user.pk, "project": getattr(project, "pk", None)},
    )


def default_project_get(user) -> Project | None:
    row = DefaultProject.objects.select_related("project").filter(user=user).first() if user else None
    return row.project if row else None
