from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from autopilot import views

api_patterns = [
    path("", include("autopilot.api.urls")),
    path("", include("autopilot.manager.api.urls")),
    path("", include("blueprints.api.urls")),
    path("", include("runs.api.urls")),
]

# JSON error answers under /api/ (Django's HTML pages elsewhere).
handler400 = "autopilot.api.exceptions.bad_request"
handler404 = "autopilot.api.exceptions.page_not_found"
handler500 = "autopilot.api.exceptions.server_error"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include(api_patterns)),
    path("", views.dashboard, name="dashboard"),
    path("dashboard/", views.dashboard, name="dashboard-page"),
    path("needs-input/", views.needs_input, name="needs-input"),
    path("projects/", views.projects_page, name="projects"),
    path("projects/branch/", views.branch_hint, name="project-branch-hint"),
    path("projects/<int:pk>/remove/", views.project_remove, name="project-remove"),
    path("projects/<int:pk>/", views.project_detail, name="project-detail"),
    path(
        "projects/<int:pk>/snapshot/refresh/",
        views.project_snapshot_refresh,
        name="project-snapshot-refresh-web",
    ),
    path("", include("autopilot.manager.web_urls")),
    path("", include("blueprints.urls")),
    path("", include("runs.urls")),
]
