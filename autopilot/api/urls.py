from django.urls import path
from rest_framework.routers import DefaultRouter

from autopilot.api.views import EventViewSet, ProjectViewSet, TokenObtainView

router = DefaultRouter(trailing_slash=True)
router.register("projects", ProjectViewSet, basename="project")
router.register("events", EventViewSet, basename="event")

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="api-token"),
    *router.urls,
]
