from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from autopilot.schedules import ensure_schedules


class Command(BaseCommand):
    help = "Prepare the data directory: migrate every database, create the cache table, register schedules."

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        for alias in settings.DATABASES:
            call_command("migrate", database=alias, interactive=False, verbosity=max(verbosity - 1, 0))
        call_command("createcachetable", verbosity=max(verbosity - 1, 0))
        call_command("collectstatic", interactive=False, verbosity=0)
        created = ensure_schedules()
        self.stdout.write(f"Data directory ready: {settings.DATA_DIR} (schedules: {', '.join(created)})")
