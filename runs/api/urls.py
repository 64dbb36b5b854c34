from django.urls import path
from rest_framework.routers import SimpleRouter

from runs.api.brain import urlpatterns as brain_urls
from runs.api.history import urlpatterns as history_urls
from runs.api.runs import ProjectRunsView, RunViewSet, StepViewSet

router = SimpleRouter(trailing_slash=True)
router.register("runs", RunViewSet, basename="run")
router.register("steps", StepViewSet, basename="step")

urlpatterns = [
    path("projects/<int:project_id>/runs/", ProjectRunsView.as_view(), name="project-runs"),
    *brain_urls,
    *history_urls,  # before the router: "runs/import/" and "runs/compare/" are not run ids
    *router.urls,
]
