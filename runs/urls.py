from django.urls import path

from runs import views, views_integration, views_sessions, views_terminal

urlpatterns: list = [
    path("sessions/", views_sessions.sessions_list, name="sessions"),
    path("sessions/compare/", views_sessions.sessions_compare, name="sessions-compare"),
    path("usage/", views_sessions.usage_page, name="usage"),
    path("runs/new/", views_sessions.run_launch, name="run-launch"),
    path("projects/<int:pk>/runs/", views.project_runs, name="run-list"),
    path(
        "projects/<int:pk>/tasks/<int:task_id>/interactive/", views.task_interactive, name="task-interactive"
    ),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/replay/", views.run_replay, name="run-replay"),
    path("runs/<int:run_id>/recording.cast", views_terminal.run_recording, name="run-recording"),
    path("runs/<int:run_id>/steps/<int:step_id>/rollback/", views.step_rollback, name="run-step-rollback"),
    path("runs/<int:run_id>/<str:action>/", views.run_action, name="run-action"),
    path("projects/<int:pk>/integration/", views_integration.integration_page, name="integration-page"),
    path("projects/<int:pk>/integration/diff/", views_integration.integration_diff, name="integration-diff"),
    path(
        "projects/<int:pk>/integration/settings/",
        views_integration.integration_settings,
        name="integration-settings",
    ),
    path(
        "projects/<int:pk>/integration/<int:integration_id>/<str:action>/",
        views_integration.integration_action,
        name="integration-action",
    ),
    path(
        "projects/<int:pk>/tasks/<int:task_id>/integration/",
        views_integration.task_integration,
        name="task-integration",
    ),
    path(
        "projects/<int:pk>/tasks/<int:task_id>/review/", views_integration.task_review, name="task-review-web"
    ),
]
