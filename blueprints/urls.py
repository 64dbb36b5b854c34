from django.urls import path

from blueprints import views_blueprints, views_tasks

urlpatterns: list = [
    # blueprints ("ingest")
    path("projects/<int:pk>/blueprints/", views_blueprints.blueprint_versions, name="blueprint-versions"),
    path("projects/<int:pk>/blueprints/ingest/", views_blueprints.blueprint_ingest, name="blueprint-ingest"),
    path(
        "projects/<int:pk>/blueprints/jobs/<int:job_id>/",
        views_blueprints.blueprint_job,
        name="blueprint-job",
    ),
    path(
        "projects/<int:pk>/blueprints/v<int:version>/", views_blueprints.blueprint_diff, name="blueprint-diff"
    ),
    path("projects/<int:pk>/plan/", views_blueprints.plan_tree, name="plan-tree"),
    path("projects/<int:pk>/plan/pin/", views_blueprints.plan_pin, name="plan-pin"),
    path("projects/<int:pk>/plan/search/", views_blueprints.plan_search, name="plan-search"),
    # tasks ("graph")
    path("projects/<int:pk>/tasks/", views_tasks.task_board, name="task-board"),
    path("projects/<int:pk>/tasks/new/", views_tasks.task_new, name="task-new"),
    path("projects/<int:pk>/tasks/generate/", views_tasks.task_generate, name="task-generate"),
    path("projects/<int:pk>/tasks/<int:task_id>/", views_tasks.task_detail, name="task-detail"),
    path("projects/<int:pk>/tasks/<int:task_id>/edit/", views_tasks.task_edit, name="task-edit"),
    path(
        "projects/<int:pk>/tasks/<int:task_id>/transition/",
        views_tasks.task_transition,
        name="task-transition",
    ),
    path("projects/<int:pk>/tasks/<int:task_id>/delete/", views_tasks.task_delete, name="task-delete"),
    path(
        "projects/<int:pk>/tasks/<int:task_id>/dependencies/",
        views_tasks.task_dependency_add,
        name="task-dependency-add",
    ),
    path(
        "projects/<int:pk>/tasks/<int:task_id>/dependencies/<int:dep_id>/remove/",
        views_tasks.task_dependency_remove,
        name="task-dependency-remove",
    ),
]
