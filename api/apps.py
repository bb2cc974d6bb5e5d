from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The integration API: other systems drive Renewly over HTTP, through the same services
    as the people's side (imports policies and notifications)."""

    name = "api"
    verbose_name = "Integration API"
