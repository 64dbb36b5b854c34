"""Manager API routes (included under /api/)."""

from django.urls import path

from autopilot.manager import api

urlpatterns = [
    path("projects/<int:pk>/manager/plan/", api.ManagerPlanView.as_view(), name="manager-plan"),
    path("projects/<int:pk>/learning_metrics/", api.LearningMetricsView.as_view(), name="manager-learning-metrics"),
    path("projects/<int:pk>/autopilot_tick/", api.TickView.as_view(), name="manager-tick"),
    path("projects/<int:pk>/refine_plan/", api.RefinePlanView.as_view(), name="manager-refine-plan"),
    path("projects/<int:pk>/proposals/", api.ProjectProposalsView.as_view(), name="manager-proposals"),
    path("proposals/<int:pk>/accept/", api.ProposalDecisionView.as_view(decision="accept"), name="proposal-accept"),
    path("proposals/<int:pk>/dismiss/", api.ProposalDecisionView.as_view(decision="dismiss"), name="proposal-dismiss"),
    path("queue/", api.QueueView.as_view(), name="manager-queue"),
    path("queue/clear/", api.QueueClearView.as_view(), name="manager-queue-clear"),
]
