"""The manager becomes its own app: it takes over Proposal and FileStat from the core.

The tables keep their names (autopilot_proposal, autopilot_filestat) and their rows: this migration
changes Django's state only (the core's 0005 removed them from its state). Content types (and so the
permissions given to users and groups) move with them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


MOVED = ("proposal", "filestat")


def _relabel(apps, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types(apps, schema_editor):
    _relabel(apps, "autopilot", "manager")


def move_content_types_back(apps, schema_editor):
    _relabel(apps, "manager", "autopilot")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('autopilot', '0005_manager_models_moved'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('blueprints', '0001_initial'),
        ('runs', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='FileStat',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('path', models.CharField(max_length=1000)),
                        ('runs', models.PositiveIntegerField(default=0)),
                        ('failures', models.PositiveIntegerField(default=0)),
                        ('reworks', models.PositiveIntegerField(default=0)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='file_stats', to='autopilot.project')),
                    ],
                    options={
                        'db_table': 'autopilot_filestat',
                        'ordering': ['project_id', '-failures', 'path'],
                        'constraints': [models.UniqueConstraint(fields=('project', 'path'), name='filestat_unique_path', violation_error_message='One statistics row per file and project.')],
                    },
                ),
                migrations.CreateModel(
                    name='Proposal',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('accepted', 'Accepted'), ('dismissed', 'Dismissed'), ('expired', 'Expired')], default='pending', max_length=20)),
                        ('role', models.CharField(default='code', max_length=20)),
                        ('agent_backend', models.CharField(blank=True, max_length=40)),
                        ('model', models.CharField(blank=True, max_length=200)),
                        ('score', models.FloatField(default=0)),
                        ('reason', models.TextField(blank=True)),
                        ('decided_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='proposals', to='autopilot.project')),
                        ('run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='runs.executionrun')),
                        ('task', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='proposals', to='blueprints.task')),
                    ],
                    options={
                        'db_table': 'autopilot_proposal',
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['project', 'status', '-created_at'], name='proposal_project_status')],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'pending')), fields=('task',), name='proposal_one_pending_per_task', violation_error_message='This task already has a pending proposal.')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
