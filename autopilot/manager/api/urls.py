"""Manager API routes (included under /api/): viewset actions on the paths and names of before."""

from django.urls import path

from autopilot.manager.api.views import ProjectManagerViewSet, ProposalViewSet, QueueViewSet

project = ProjectManagerViewSet.as_view
proposal = ProposalViewSet.as_view

urlpatterns = [
    path("projects/<int:pk>/manager/plan/", project({"get": "plan"}), name="manager-plan"),
    path(
        "projects/<int:pk>/learning_metrics/",
        project({"get": "learning_metrics"}),
        name="manager-learning-metrics",
    ),
    path("projects/<int:pk>/autopilot_tick/", project({"post": "tick"}), name="manager-tick"),
    path("projects/<int:pk>/refine_plan/", project({"post": "refine_plan"}), name="manager-refine-plan"),
    path("projects/<int:pk>/proposals/", project({"get": "proposals"}), name="manager-proposals"),
    path("proposals/<int:pk>/accept/", proposal({"post": "accept"}), name="proposal-accept"),
    path("proposals/<int:pk>/dismiss/", proposal({"post": "dismiss"}), name="proposal-dismiss"),
    path("queue/", QueueViewSet.as_view({"get": "overview"}), name="manager-queue"),
    path("queue/clear/", QueueViewSet.as_view({"post": "clear"}), name="manager-queue-clear"),
]
