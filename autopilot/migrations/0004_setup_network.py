from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("autopilot", "0003_trust"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="setup_network",
            field=models.BooleanField(
                default=False,
                help_text="Let the setup script reach the network (e.g. to install packages). "
                "Agent commands and the test command never have network in the sandbox.",
            ),
        ),
    ]
