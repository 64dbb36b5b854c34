"""Manager web routes (pages and htmx endpoints)."""

from django.urls import path

from autopilot.manager import views

urlpatterns = [
    path("projects/<int:pk>/manager/", views.manager_page, name="manager-page"),
    path("projects/<int:pk>/manager/autonomy/", views.autonomy_update, name="manager-autonomy"),
    path("projects/<int:pk>/manager/tick/", views.tick_now, name="manager-tick-now"),
    path("projects/<int:pk>/manager/queue/clear/", views.queue_clear_view, name="manager-queue-clear-web"),
    path(
        "manager/proposals/<int:pk>/accept/",
        views.proposal_decide,
        {"decision": "accept"},
        name="manager-proposal-accept",
    ),
    path(
        "manager/proposals/<int:pk>/dismiss/",
        views.proposal_decide,
        {"decision": "dismiss"},
        name="manager-proposal-dismiss",
    ),
]
