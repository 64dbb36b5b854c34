import pytest
from django.db import transaction

from autopilot.events import record_event
from autopilot.models import Event


@pytest.mark.django_db(transaction=True)
def test_event_recorded_and_pushed_on_commit(project):
    with transaction.atomic():
        record_event(kind="test.ping", subject=project, data={"x": 1})
    event = Event.objects.get(kind="test.ping")
    assert event.project_id == project.pk
    assert event.subject_type == "project"
