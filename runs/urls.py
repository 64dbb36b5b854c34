from django.urls import path

from runs import views

urlpatterns: list = [
    path("projects/<int:pk>/runs/", views.project_runs, name="run-list"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/replay/", views.run_replay, name="run-replay"),
    path("runs/<int:run_id>/steps/<int:step_id>/rollback/", views.step_rollback, name="run-step-rollback"),
    path("runs/<int:run_id>/<str:action>/", views.run_action, name="run-action"),
]
