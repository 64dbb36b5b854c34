import subprocess
import sys

import pytest

from autopilot.models import Project


@pytest.mark.django_db(transaction=True)
def test_child_process_sees_the_test_database(project, subprocess_env):
    # Given a committed project, when a child process opens the database through the same settings
    code = (
        "import django; django.setup(); from autopilot.models import Project; "
        "print(Project.objects.get().name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True, timeout=60
    )
    # Then it reads the same row
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == Project.objects.get().name == project.name
