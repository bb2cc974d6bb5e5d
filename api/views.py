"""The integration API's endpoints: each checks the caller's reach and its input's shape, calls
one service of the domain or the engine, and answers plain values (api.selectors)."""

from datetime import date, datetime

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers as drf
from rest_framework.response import Response
from rest_framework.views import APIView

from api import access, selectors
from api import serializers as shapes
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import idempotent
from api.problems import PROBLEM_CONTENT_TYPE, Problem
from notifications import preferences, services
from notifications.models import Channel, ConsentChange, NotificationStatus, PolicyOutcome
from policies import phones
from policies.importers import (
    COLUMNS,
    RowError,
    RowOutcome,
    UnknownAgents,
    import_rows,
    parse_date,
)
from policies.models import Agent, PolicyStatus
from policies.services import AgentError, PolicyChangeError, register_agent


def problems(*codes: int) -> dict:
    return {(code, PROBLEM_CONTENT_TYPE): shapes.ProblemOut for code in (401, 429, *codes)}


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Any unique string of yours (a UUID): the same key and body answer the first "
    "answer again, for 24 hours; another body answers 422; while the first runs, 409.",
)
UNKNOWN_AGENTS_PARAMETER = OpenApiParameter(
    "unknown_agents",
    OpenApiTypes.STR,
    enum=UnknownAgents.values,
    description="A row naming an unknown agent: reject it, or create the agent. "
    "Default: the IMPORT_UNKNOWN_AGENTS setting.",
)
PUT_IS_IDEMPOTENT = "Idempotent by nature: sending the same body again changes nothing."


def _query(request, name: str, parse, *, default=None):
    """A query parameter, parsed, or a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as error:
        raise Problem(
            400,
            f"Invalid {name} query parameter {raw!r}: {error}",
            errors=[{"pointer": "", "parameter": name, "detail": str(error)}],
        ) from None


def _one_of(values):
    def parse(raw: str) -> str:
        if raw not in values:
            raise ValueError(f"expected one of: {', '.join(values)}")
        return raw

    return parse


def _limit(raw: str) -> int:
    limit = int(raw)
    if not 1 <= limit <= 500:
        raise ValueError("expected 1 to 500")
    return limit


def _aware(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def _validated(shape: type[drf.Serializer], data) -> dict:
    serializer = shape(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _rejection(reason: str) -> list[dict]:
    """The importer's reason, pointed at the field it names first."""
    named = [(reason.find(column), column) for column in COLUMNS if column in reason]
    field = min(named)[1] if named else ""
    return [{"pointer": f"/{field}" if field else "", "detail": reason}]


class ApiView(APIView):
    """The API's views: a path naming what cannot exist (a NUL character, which PostgreSQL
    cannot even compare) finds nothing."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if any(isinstance(value, str) and "\x00" in value for value in kwargs.values()):
            raise Problem(404, "Nothing here has a NUL character in its name.")


# --- Agents ---------------------------------------------------------------------------------


def _agent_out(agent: Agent) -> dict:
    return {
        "email": agent.email,
        "first_name": agent.user.first_name,
        "last_name": agent.user.last_name,
        "phone": agent.phone,
        "active": agent.user.is_active,
        "invited": agent.user.has_usable_password(),
    }


def _agent_email(email: str) -> str:
    email = email.strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError:
        raise Problem(404, f"{email!r} is not an email address: no agent has it.") from None
    return email


class AgentView(ApiView):
    permission_classes = [access.KeyPermission, access.AllBooksKey]

    @extend_schema(responses={200: shapes.AgentOut, **problems(403, 404)}, operation_id="agent")
    def get(self, request, email: str):
        email = _agent_email(email)
        agent = Agent.objects.select_related("user").filter(email=email).first()
        if agent is None:
            raise Problem(404, f"No agent {email!r}.")
        return Response(_agent_out(agent))

    @extend_schema(
        request=shapes.AgentIn,
        responses={200: shapes.AgentOut, 201: shapes.AgentOut, **problems(400, 403, 404, 413)},
        description="Create or update an agent. A new agent's login has no usable password "
        "until an admin invites them; active=false keeps their book. " + PUT_IS_IDEMPOTENT,
        operation_id="put_agent",
    )
    def put(self, request, email: str):
        email = _agent_email(email)
        data = _validated(shapes.AgentIn, request.data)
        phone = data.get("phone", "")
        try:
            phone = phones.to_e164(phone) if phone else ""
        except phones.InvalidPhoneNumber as error:
            raise Problem(
                400,
                f"invalid phone {phone!r}: {error}",
                errors=[{"pointer": "/phone", "detail": f"invalid phone: {error}"}],
            ) from None
        existed = Agent.objects.filter(email=email).exists()
        try:
            agent = register_agent(
                email=email,
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
                phone=phone,
                active=data.get("active"),
            )
        except AgentError as error:
            raise Problem(422, f"Agent {email!r}: {error}.") from None
        return Response(_agent_out(agent), status=200 if existed else 201)


# --- Policies -------------------------------------------------------------------------------


class PolicyView(ApiView):
    @extend_schema(responses={200: shapes.PolicyOut, **problems(404)}, operation_id="policy")
    def get(self, request, policy_number: str):
        found = selectors.policy_out(policy_number, access.policies_for(request.auth))
        if found is None:
            raise Problem(404, f"No policy {policy_number!r}.")
        return Response(found)

    @extend_schema(
        request=shapes.PolicyFields,
        parameters=[UNKNOWN_AGENTS_PARAMETER],
        responses={
            200: shapes.UpsertOut,
            201: shapes.UpsertOut,
            **problems(400, 403, 404, 413, 422),
        },
        description="Create or update one policy and its customer, with the checks of a CSV "
        "row. " + PUT_IS_IDEMPOTENT,
        operation_id="put_policy",
    )
    def put(self, request, policy_number: str):
        policy_number = policy_number.strip()  # as the importer strips it
        key = request.auth
        # A policy outside the key's book is not there for it, even to be written over.
        if (
            key.agent_id
            and access.policies_for_other_books(key).filter(policy_number=policy_number).exists()
        ):
            raise Problem(404, f"No policy {policy_number!r}.")
        data = shapes.plain_policy_fields(request.data)
        if data is None:  # not the usual body: DRF's own check, and its words
            data = _validated(shapes.PolicyFields, request.data)
        if key.agent_id and not data.get("agent_email"):
            data["agent_email"] = key.agent.email
        unknown_agents = _query(request, "unknown_agents", _one_of(UnknownAgents.values))
        summary = import_rows(
            [(0, {**data, "policy_number": policy_number})],
            only_agent_id=key.agent_id,
            unknown_agents=unknown_agents,
        )
        if summary.rejected:
            reason = summary.rejected[0].reason
            raise Problem(422, reason, errors=_rejection(reason))
        outcome = summary.row_outcomes[0]
        body = {
            "outcome": outcome,
            "agents_created": summary.agents_created,
            # An upsert plans no reminder: its answer leaves them out (GET has them).
            "policy": selectors.upserted_policy_out(policy_number),
        }
        return Response(body, status=201 if outcome == RowOutcome.CREATED else 200)


class PolicyListView(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("updated_since", OpenApiTypes.DATETIME),
            OpenApiParameter("status", OpenApiTypes.STR, enum=PolicyStatus.values),
            OpenApiParameter("cursor", OpenApiTypes.STR),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 500 (100)"),
        ],
        responses={200: shapes.PolicyPageOut, **problems(400)},
        description="Policies in the order they last changed, oldest first: keep the last "
        "page's next_cursor, or the newest updated_at you saw, to ask for what changed since.",
        operation_id="policies",
    )
    def get(self, request):
        policies = access.policies_for(request.auth).select_related("agent")
        if since := _query(request, "updated_since", _aware):
            policies = policies.filter(updated_at__gt=since)
        if status := _query(request, "status", _one_of(PolicyStatus.values)):
            policies = policies.filter(status=status)
        found, next_cursor = selectors.POLICY_PAGES.page(
            policies,
            request.query_params.get("cursor"),
            _query(request, "limit", _limit, default=100),
        )
        return Response(
            {
                "results": [selectors.policy_summary_out(policy) for policy in found],
                "next_cursor": next_cursor,
            }
        )


class BulkPolicyView(ApiView):
    @extend_schema(
        request=shapes.BulkIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: shapes.BulkOut, **problems(400, 403, 409, 413, 422)},
        description="Create or update up to API_BULK_MAX_ROWS (5,000) policies. Each row is "
        "answered: created, updated, unchanged, or rejected with its reason; the good rows "
        "are written even when others are rejected.",
        operation_id="bulk_policies",
    )
    @idempotent
    def post(self, request):
        data = _validated(shapes.BulkIn, request.data)
        rows, limit = data["rows"], settings.API_BULK_MAX_ROWS
        if len(rows) > limit:
            raise Problem(
                413,
                f"{len(rows)} rows: at most {limit} in one request.",
                errors=[{"pointer": "/rows", "detail": f"at most {limit} rows"}],
            )
        key = request.auth
        checked, refused = [], {}
        for index, row in enumerate(rows):
            cells = shapes.plain_policy_row(row)
            if cells is None:  # not the usual row: DRF's own check, and its words
                serializer = shapes.PolicyRowIn(data=row)
                if not serializer.is_valid():
                    refused[index] = _shape_errors(serializer.errors)
                    continue
                cells = dict(serializer.validated_data)
            if key.agent_id and not cells.get("agent_email"):
                cells["agent_email"] = key.agent.email
            checked.append((index, cells))
        summary = import_rows(
            checked, only_agent_id=key.agent_id, unknown_agents=data.get("unknown_agents")
        )
        reasons = {rejected.line: rejected.reason for rejected in summary.rejected}
        answered = {}
        for index, cells in checked:
            answered[index] = {
                "index": index,
                "policy_number": cells["policy_number"],
                "outcome": summary.row_outcomes.get(index, RowOutcome.REJECTED),
            }
            if index in reasons:
                answered[index]["reason"] = reasons[index]
        for index, reason in refused.items():
            number = rows[index].get("policy_number") if isinstance(rows[index], dict) else ""
            answered[index] = {
                "index": index,
                "policy_number": number if isinstance(number, str) else "",
                "outcome": RowOutcome.REJECTED,
                "reason": reason,
            }
        return Response(
            {
                "created": summary.created,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "rejected": len(summary.rejected) + len(refused),
                "agents_created": summary.agents_created,
                "rows": [answered[index] for index in range(len(rows))],
            }
        )


def _shape_errors(errors) -> str:
    """A row's type errors in one line, like the importer's reasons."""
    if isinstance(errors, dict):
        return "; ".join(
            f"{name}: {' '.join(str(message) for message in messages)}"
            if name != "non_field_errors"
            else " ".join(str(message) for message in messages)
            for name, messages in errors.items()
        )
    return str(errors)


class PolicyChangeView(ApiView):
    """A change of the policy's status, with what it means for its reminders."""

    change = ""  # "renewed", "cancelled" or "lapsed" (notifications.services.change_policy)

    def apply(self, request, policy_number: str, *, new_expiry_date: date | None = None):
        policies = access.policies_for(request.auth)
        policy = policies.filter(policy_number=policy_number).first()
        if policy is None:
            raise Problem(404, f"No policy {policy_number!r}.")
        try:
            cancelled = services.change_policy(
                policy=policy,
                to=self.change,
                new_expiry_date=new_expiry_date,
                source=PolicyOutcome.Source.API,
            )
        except PolicyChangeError as error:
            raise Problem(422, str(error)) from None
        return Response(
            {
                "policy": selectors.policy_out(policy_number, policies),
                "cancelled_reminders": [
                    selectors.notification_out(reminder, policy_number) for reminder in cancelled
                ],
            }
        )


def change_schema(description: str, request_shape=None):
    return extend_schema(
        request=request_shape,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: shapes.PolicyChangeOut, **problems(400, 403, 404, 409, 413, 422)},
        description=description
        + " The change and the cancellation of the reminders it makes outdated happen in one "
        "transaction; the answer lists those reminders.",
    )


class PolicyRenewalView(PolicyChangeView):
    change = "renewed"

    @change_schema("The policy was renewed to a new expiry date.", shapes.RenewalIn)
    @idempotent
    def post(self, request, policy_number: str):
        raw = _validated(shapes.RenewalIn, request.data)["expiry_date"]
        try:
            new_expiry_date = parse_date("expiry_date", raw.strip())
        except RowError as error:
            raise Problem(400, str(error), errors=_rejection(str(error))) from None
        return self.apply(request, policy_number, new_expiry_date=new_expiry_date)


class PolicyEndView(PolicyChangeView):
    """A cancellation or a lapse: no field, the path says it all."""

    @idempotent
    def post(self, request, policy_number: str):
        _validated(shapes.EmptyIn, request.data or {})
        return self.apply(request, policy_number)


@extend_schema_view(post=change_schema("The policy was cancelled.", shapes.EmptyIn))
class PolicyCancellationView(PolicyEndView):
    change = "cancelled"


@extend_schema_view(
    post=change_schema("The policy lapsed: it ran out, not renewed.", shapes.EmptyIn)
)
class PolicyLapseView(PolicyEndView):
    change = "lapsed"


# --- Customers' consent ---------------------------------------------------------------------


class ConsentView(ApiView):
    def _customer(self, request, customer_id: int):
        customer = access.customers_for(request.auth).filter(pk=customer_id).first()
        if customer is None:
            raise Problem(404, f"No customer {customer_id}.")
        return customer

    def _answer(self, customer) -> Response:
        history = ConsentChange.objects.filter(customer=customer)[:50]
        return Response(
            {
                "customer_id": customer.pk,
                **selectors.consent_out(customer),
                "history": [
                    {
                        "channel": change.channel,
                        "accepted": change.accepted,
                        "source": change.source,
                        "changed_by": change.changed_by,
                        "changed_at": change.changed_at,
                    }
                    for change in history
                ],
            }
        )

    @extend_schema(
        responses={200: shapes.CustomerConsentOut, **problems(404)}, operation_id="consent"
    )
    def get(self, request, customer_id: int):
        return self._answer(self._customer(request, customer_id))

    @extend_schema(
        request=shapes.ConsentIn,
        responses={200: shapes.CustomerConsentOut, **problems(400, 403, 404, 413)},
        description="Record the customer's consent to email, SMS and/or WhatsApp (opt-in only), in "
        "the consent history "
        "with source api and the key's name. " + PUT_IS_IDEMPOTENT,
        operation_id="put_consent",
    )
    def put(self, request, customer_id: int):
        customer = self._customer(request, customer_id)
        data = _validated(shapes.ConsentIn, request.data)
        if request.auth.agent_id and access.shared_with_another_book(customer, request.auth):
            # The importer's rule: another agent's reminders go to this customer too.
            raise Problem(
                403,
                "This customer also has policies in another agent's book: only a key for all "
                "books may change their consent.",
            )
        preferences.set_channels(
            customer,
            email=data.get("email"),
            sms=data.get("sms"),
            whatsapp=data.get("whatsapp"),
            source=ConsentChange.Source.API,
            changed_by=request.auth.name,
        )
        return self._answer(customer)


# --- Notifications --------------------------------------------------------------------------


class NotificationListView(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=NotificationStatus.values),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=Channel.values),
            OpenApiParameter("due_from", OpenApiTypes.DATE),
            OpenApiParameter("cursor", OpenApiTypes.STR),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 500 (100)"),
        ],
        responses={200: shapes.NotificationPageOut, **problems(400)},
        description="Reminders by due date, for reconciliation and dashboards elsewhere.",
        operation_id="notifications",
    )
    def get(self, request):
        notifications = access.notifications_for(request.auth).select_related("policy")
        if status := _query(request, "status", _one_of(NotificationStatus.values)):
            notifications = notifications.filter(status=status)
        if channel := _query(request, "channel", _one_of(Channel.values)):
            notifications = notifications.filter(channel=channel)
        if due_from := _query(request, "due_from", date.fromisoformat):
            notifications = notifications.filter(due_on__gte=due_from)
        found, next_cursor = selectors.NOTIFICATION_PAGES.page(
            notifications,
            request.query_params.get("cursor"),
            _query(request, "limit", _limit, default=100),
        )
        return Response(
            {
                "results": [
                    selectors.notification_out(notification, notification.policy.policy_number)
                    for notification in found
                ],
                "next_cursor": next_cursor,
            }
        )
