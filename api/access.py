"""Who may call the API, on what, and how often: an integration's key (`Authorization: Api-Key
<key>`), its scope (every book or one agent's), its access (read-write or read-only) and its
rate limit. A key limited to one agent's book finds nothing outside it: what is not in the
book answers 404, as if it did not exist."""

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from api.models import ApiKey
from notifications.models import Notification
from policies.models import Customer, Policy

KEYWORD = "Api-Key"


class Integration:
    """The caller: stands in for request.user, so that DRF's machinery sees someone
    authenticated. Its key says what it may reach."""

    is_authenticated = True

    def __init__(self, key: ApiKey):
        self.key = key

    def __str__(self) -> str:
        return self.key.name


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() != KEYWORD.lower():
            return None  # not ours: answered 401 by the permission, with the scheme to use
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                f"Send the key as 'Authorization: {KEYWORD} <key>'."
            )
        try:
            given = header[1].decode("ascii")
        except UnicodeDecodeError:
            given = ""
        # Found by its prefix, revoked or not, so that a revoked key is told it was revoked.
        # get(), not first(): the prefix is unique, and ordering costs Django's compiler.
        try:
            # No join: the agent of a key limited to one book is read when it is needed.
            key = ApiKey.objects.get(prefix=given.partition(".")[0])
        except ApiKey.DoesNotExist:
            key = None
        if key is None or not key.is_valid(given):
            raise exceptions.AuthenticationFailed("This API key is not valid.")
        if key.revoked:
            raise exceptions.AuthenticationFailed("This API key was revoked.")
        if key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        return Integration(key), key

    def authenticate_header(self, request) -> str:
        return KEYWORD


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The key, as the schema describes it."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"'{KEYWORD} <key>': create one with manage.py create_api_key.",
        }


class KeyPermission(permissions.BasePermission):
    """A key may read; a read-only key may not write."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated(f"Send an API key: 'Authorization: {KEYWORD} <key>'.")
        if request.method not in permissions.SAFE_METHODS and request.auth.read_only:
            raise exceptions.PermissionDenied("This API key is read-only.")
        return True


class AllBooksKey(permissions.BasePermission):
    """Managing agents is for a key that reaches every book."""

    message = "Only a key for all books may manage agents; this one is limited to one book."

    def has_permission(self, request, view) -> bool:
        return request.auth.agent_id is None


class PerKeyThrottle(throttling.SimpleRateThrottle):
    """API_RATE_LIMIT_PER_MINUTE requests a minute per key, counted in Django's cache (Redis in
    production, so every web process counts together). DRF answers 429 with Retry-After."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        limit = settings.API_RATE_LIMIT_PER_MINUTE
        return f"{limit}/min" if limit else None

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()  # read at each request: tests and deployments change it
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


def policies_for(key: ApiKey) -> QuerySet[Policy]:
    policies = Policy.objects.all()
    return policies.filter(agent_id=key.agent_id) if key.agent_id else policies


def customers_for(key: ApiKey) -> QuerySet[Customer]:
    customers = Customer.objects.all()
    if key.agent_id:
        customers = customers.filter(pk__in=policies_for(key).values("customer_id"))
    return customers


def notifications_for(key: ApiKey) -> QuerySet[Notification]:
    notifications = Notification.objects.all()
    return notifications.filter(policy__agent_id=key.agent_id) if key.agent_id else notifications


def policies_for_other_books(key: ApiKey) -> QuerySet[Policy]:
    return Policy.objects.exclude(agent_id=key.agent_id)


def shared_with_another_book(customer: Customer, key: ApiKey) -> bool:
    return policies_for_other_books(key).filter(customer=customer).exists()
