"""The `autopilot` console script: every subcommand is a Django management command.

`autopilot serve`, `autopilot blueprint ingest …`, `autopilot run …` are the same as
`python manage.py serve`, … so each app keeps its commands in its own management/commands/.
"""

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autopilot.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["autopilot", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
