from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from api.models import ApiKey

# The library's own key model is not Renewly's: its keys have no scope and would open nothing.
admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    """Keys are named and revoked here; a new key is shown once, when it is saved."""

    list_display = ("name", "prefix", "agent", "read_only", "created", "expiry_date", "revoked")
    list_filter = ("revoked", "read_only", "created")
    search_fields = ("name", "prefix", "agent__email")
    autocomplete_fields = ("agent",)
    list_select_related = ("agent",)
    fields = ("name", "agent", "read_only", "expiry_date", "revoked", "prefix")
