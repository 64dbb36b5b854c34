"""Proposal and FileStat moved to the manager app (label `manager`): removed from the core's state
only; their tables (autopilot_proposal, autopilot_filestat) and rows stay, and manager 0001 takes
them over."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("autopilot", "0004_setup_network"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Proposal"),
                migrations.DeleteModel(name="FileStat"),
            ],
            database_operations=[],
        ),
    ]
