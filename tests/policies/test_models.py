"""The policy domain's rules, proven through the database itself: each constraint must refuse a
bad row however it is written (save, QuerySet.update, bulk_create), not only through forms."""

from datetime import date, timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F

from policies.models import Agent, Customer, Policy
from tests.factories import make_agent, make_customer, make_policy

pytestmark = pytest.mark.django_db

EXPIRY = date(2027, 1, 1)


@pytest.fixture
def customer(db):
    return make_customer()


@pytest.fixture
def policy(customer, agent):
    return make_policy("P-1", customer=customer, agent=agent, expiry_date=EXPIRY)


def unsaved_policy(customer, agent, policy_number="P-2", **fields):
    values = {
        "product_line": "auto",
        "start_date": EXPIRY - timedelta(days=365),
        "expiry_date": EXPIRY,
        "status": Policy.Status.ACTIVE,
        **fields,
    }
    return Policy(policy_number=policy_number, customer=customer, agent=agent, **values)


# --- Policy: expiry after start --------------------------------------------------------------


@pytest.mark.parametrize("days_after_start", [0, -1], ids=["same_day", "before_start"])
def test_policy_cannot_be_saved_with_expiry_not_after_start(customer, agent, days_after_start):
    start = date(2026, 6, 1)
    bad = unsaved_policy(
        customer, agent, start_date=start, expiry_date=start + timedelta(days=days_after_start)
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        bad.save()
    assert not Policy.objects.exists()


def test_policy_expiry_one_day_after_start_is_accepted(customer, agent):
    start = date(2026, 6, 1)
    unsaved_policy(customer, agent, start_date=start, expiry_date=start + timedelta(days=1)).save()
    assert Policy.objects.count() == 1


def test_policy_expiry_cannot_be_moved_before_start_by_queryset_update(policy):
    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.filter(pk=policy.pk).update(expiry_date=F("start_date") - timedelta(days=1))
    policy.refresh_from_db()
    assert policy.expiry_date == EXPIRY


def test_policy_expiry_before_start_is_refused_by_bulk_create(customer, agent):
    good = unsaved_policy(customer, agent, "P-GOOD")
    bad = unsaved_policy(customer, agent, "P-BAD", start_date=EXPIRY, expiry_date=EXPIRY)
    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.bulk_create([good, bad])
    assert not Policy.objects.exists()


# --- Policy: unique number -------------------------------------------------------------------


def test_policy_number_is_unique(policy, customer, agent):
    with pytest.raises(IntegrityError), transaction.atomic():
        unsaved_policy(customer, agent, policy.policy_number).save()
    assert Policy.objects.count() == 1


def test_policy_number_cannot_be_duplicated_by_queryset_update(policy, customer, agent):
    other = make_policy("P-2", customer=customer, agent=agent, expiry_date=EXPIRY)
    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.filter(pk=other.pk).update(policy_number=policy.policy_number)
    other.refresh_from_db()
    assert other.policy_number == "P-2"


def test_policy_number_repeated_in_bulk_create_is_refused(customer, agent):
    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.bulk_create(
            [unsaved_policy(customer, agent, "P-9"), unsaved_policy(customer, agent, "P-9")]
        )
    assert not Policy.objects.exists()


# --- Policy: status --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["expired", "ACTIVE", ""])
def test_policy_status_outside_the_choices_is_refused_on_save(customer, agent, status):
    with pytest.raises(IntegrityError), transaction.atomic():
        unsaved_policy(customer, agent, status=status).save()
    assert not Policy.objects.exists()


def test_policy_status_outside_the_choices_is_refused_by_queryset_update(policy):
    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.filter(pk=policy.pk).update(status="expired")
    policy.refresh_from_db()
    assert policy.status == Policy.Status.ACTIVE


def test_policy_status_outside_the_choices_is_refused_by_bulk_create(customer, agent):
    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.bulk_create([unsaved_policy(customer, agent, status="void")])
    assert not Policy.objects.exists()


def test_every_policy_status_choice_is_accepted(customer, agent):
    for number, status in enumerate(Policy.Status.values):
        unsaved_policy(customer, agent, f"P-{number}", status=status).save()
    assert sorted(Policy.objects.values_list("status", flat=True)) == sorted(Policy.Status.values)


# --- Customer --------------------------------------------------------------------------------


def test_customer_email_is_unique(customer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(name="Someone Else", email=customer.email)
    assert Customer.objects.count() == 1


def test_customer_email_cannot_be_duplicated_by_queryset_update(customer):
    other = make_customer("sam@mail.example", name="Sam Roe")
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.filter(pk=other.pk).update(email=customer.email)
    other.refresh_from_db()
    assert other.email == "sam@mail.example"


def test_customers_without_email_may_share_the_empty_value(db):
    Customer.objects.create(name="No Mail One", email="")
    Customer.objects.create(name="No Mail Two", email="")
    Customer.objects.bulk_create([Customer(name="No Mail Three", email="")])
    assert Customer.objects.filter(email="").count() == 3


def test_customer_email_must_be_lowercase_on_save(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(name="Pat Doe", email="Pat@Mail.Example")
    assert not Customer.objects.exists()


def test_customer_email_must_be_lowercase_on_queryset_update(customer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.filter(pk=customer.pk).update(email="PAT@mail.example")
    customer.refresh_from_db()
    assert customer.email == "pat@mail.example"


def test_customer_email_must_be_lowercase_in_bulk_create(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.bulk_create([Customer(name="Pat Doe", email="Pat@mail.example")])
    assert not Customer.objects.exists()


@pytest.mark.parametrize("phone", ["4155550123", "0034612345678", " +14155550123"])
def test_customer_phone_must_start_with_plus_on_save(db, phone):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_customer(phone=phone)
    assert not Customer.objects.exists()


def test_customer_phone_must_start_with_plus_on_queryset_update(customer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.filter(pk=customer.pk).update(phone="4155550123")
    customer.refresh_from_db()
    assert customer.phone == "+14155550123"


def test_customer_phone_must_start_with_plus_in_bulk_create(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.bulk_create([Customer(name="Pat Doe", phone="4155550123")])
    assert not Customer.objects.exists()


def test_customer_phone_may_be_empty(db):
    assert make_customer(phone="").phone == ""


@pytest.mark.parametrize("language", ["fr", "de", "pt-BR", "zh-Hans", "es-mx"])
def test_a_customer_may_read_any_language_not_only_the_sites(db, language):
    assert language not in dict(settings.LANGUAGES)
    customer = make_customer(language=language)
    customer.full_clean()

    customer.refresh_from_db()
    assert customer.language == language  # as given


@pytest.mark.parametrize("language", ["xx", "klingon", "und", "12", "pt--BR"])
def test_a_tag_that_names_no_known_language_is_refused_with_its_reason(db, language):
    with pytest.raises(ValidationError) as refused:
        Customer(name="Pat", email="pat@mail.example", language=language).full_clean()
    assert language in str(refused.value.message_dict["language"])


def test_a_customer_always_has_a_language(customer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.filter(pk=customer.pk).update(language="")
    customer.refresh_from_db()
    assert customer.language == settings.LANGUAGE_CODE


def test_every_configured_language_is_accepted(db):
    for code, _ in settings.LANGUAGES:
        make_customer(f"{code}@mail.example", language=code)
    assert sorted(Customer.objects.values_list("language", flat=True)) == sorted(
        code for code, _ in settings.LANGUAGES
    )


# --- Agent -----------------------------------------------------------------------------------


def test_agent_email_must_be_lowercase_on_save(db):
    user = get_user_model().objects.create_user("casey")
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(user=user, email="Casey@Agency.example")
    assert not Agent.objects.exists()


def test_agent_email_must_be_lowercase_on_queryset_update(agent):
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(email="AGENT@agency.example")
    agent.refresh_from_db()
    assert agent.email == "agent@agency.example"


def test_agent_email_must_be_lowercase_in_bulk_create(db):
    user = get_user_model().objects.create_user("casey")
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.bulk_create([Agent(user=user, email="Casey@agency.example")])
    assert not Agent.objects.exists()


def test_agent_email_is_unique(agent):
    user = get_user_model().objects.create_user("casey")
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(user=user, email=agent.email)
    assert Agent.objects.count() == 1


# --- Readable names --------------------------------------------------------------------------


def test_policy_str_names_number_product_line_and_expiry(policy):
    assert str(policy) == "P-1 (auto, expires 2027-01-01)"


def test_customer_str_shows_name_and_email(customer):
    assert str(customer) == "Pat Doe <pat@mail.example>"


def test_customer_without_email_str_is_just_the_name(db):
    assert str(make_customer(email="", name="Lee Park")) == "Lee Park"


def test_agent_str_is_the_full_name(db):
    agent = make_agent("robin", "robin@agency.example")
    agent.user.last_name = "Diaz"
    agent.user.save()
    assert str(agent) == "Robin Diaz"


def test_agent_without_a_full_name_str_is_the_username(db):
    user = get_user_model().objects.create_user("casey")
    assert str(Agent.objects.create(user=user, email="casey@agency.example")) == "casey"
