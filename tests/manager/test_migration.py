"""The manager became its own app: its models' rows, tables and permissions survive the move."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from autopilot.manager.models import FileStat, Proposal
from tests.factories import UserFactory

BEFORE = [("autopilot", "0004_setup_network"), ("manager", None)]
AFTER = [("autopilot", "0005_manager_models_moved"), ("manager", "0001_initial")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.fixture
def back_to_the_latest_schema():
    """Going back to BEFORE also unapplies later migrations (e.g. autopilot 0006): whatever happens,
    the test database ends at the latest schema, as the tests after this one (and their child
    processes, which check for pending migrations) expect."""
    yield
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_moving_the_models_keeps_rows_tables_and_permissions(back_to_the_latest_schema):
    # Given a database from before the move: the core owned proposals and file statistics
    ContentType.objects.filter(app_label="manager").delete()
    old_type = ContentType.objects.create(app_label="autopilot", model="proposal")
    permission = Permission.objects.create(
        content_type=old_type, codename="change_proposal", name="Can change"
    )
    user = UserFactory()
    user.user_permissions.add(permission)
    _migrate(BEFORE)
    try:
        # Rows written with the models as they were then (later migrations add columns).
        old = MigrationExecutor(connection).loader.project_state([BEFORE[0]]).apps
        project = old.get_model("autopilot", "Project").objects.create(
            name="before the move", slug="before-the-move", repo_path="/tmp/before-the-move"
        )
        task = old.get_model("blueprints", "Task").objects.create(project=project, title="old task")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO autopilot_proposal (project_id, task_id, status, role, agent_backend, model, "
                "score, reason, created_at, updated_at) VALUES (%s, %s, 'pending', 'code', '', '', 2.5, "
                "'why', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                [project.pk, task.pk],
            )
            cursor.execute(
                "INSERT INTO autopilot_filestat (project_id, path, runs, failures, reworks, updated_at) "
                "VALUES (%s, 'src/a.py', 3, 2, 1, CURRENT_TIMESTAMP)",
                [project.pk],
            )
    finally:
        # When the migrations run
        _migrate(AFTER)
    # Then the rows are the manager's, in the same tables
    proposal = Proposal.objects.get(task_id=task.pk)
    assert (proposal.status, proposal.score, proposal.reason) == ("pending", 2.5, "why")
    assert FileStat.objects.filter(project_id=project.pk).values_list(
        "path", "runs", "failures", "reworks"
    ).get() == ("src/a.py", 3, 2, 1)
    assert Proposal._meta.db_table == "autopilot_proposal" and FileStat._meta.db_table == "autopilot_filestat"
    # and the permission given before the move now names the manager's model
    permission.refresh_from_db()
    assert (permission.content_type.app_label, permission.content_type.model) == ("manager", "proposal")
    user = type(user).objects.get(pk=user.pk)
    assert user.has_perm("manager.change_proposal")
