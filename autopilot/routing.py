from django.urls import path

from autopilot.consumers import EventsConsumer
from runs.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/runs/<int:run_id>/terminal/", TerminalConsumer.as_asgi()),
]
