"""Every URL of the agents' workspace, tried as an outsider: another agent gets 404 for what is
not theirs (and sees none of it in lists, filters, searches and exports), an anonymous visitor
is sent to log in, a user who is neither an agent nor allowed to see every book (staff or not)
gets 403 and no data, and each staff role sees and does what its permissions say. The URLs
are every pattern of the whole URLconf whose view is a `workspace_view` (the workspace, the
uploads, the reports...), so a new page cannot be left out."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from notifications import tasks
from notifications.models import Notification, WeeklyReport
from notifications.reports import report_path
from policies import tasks as import_tasks
from policies.models import ImportJob
from tests.factories import PASSWORD, Books, make_import_job, make_staff, two_books


@dataclass(frozen=True)
class ScopedPattern:
    name: str  # with its namespaces, for reverse(): "uploads:job"
    converters: tuple[str, ...]  # the URL's parameters, the included prefixes' too


def scoped_patterns(resolver: URLResolver | None = None, namespace: str = "", converters=()):
    """Every pattern of the URLconf whose view is wrapped by workspace.views.workspace_view."""
    for entry in (resolver or get_resolver()).url_patterns:
        found = (*converters, *entry.pattern.converters)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from scoped_patterns(entry, inner, found)
        elif isinstance(entry, URLPattern) and getattr(entry.callback, "scoped_by_book", False):
            assert entry.name, f"{entry.pattern}: name it, so that this test can reverse it"
            yield ScopedPattern(f"{namespace}{entry.name}", found)


def scoped_urls(objects: dict[str, int], *, naming_an_object: bool | None = None) -> list[str]:
    """Every workspace URL, with each id in it naming the object of `objects`; only those that
    name an object (True), or only those that do not (False)."""
    urls = []
    for pattern in scoped_patterns():
        if naming_an_object is not None and bool(pattern.converters) != naming_an_object:
            continue
        missing = [name for name in pattern.converters if name not in objects]
        assert not missing, f"{pattern.name}: teach this test which object {missing} names"
        kwargs = {name: objects[name] for name in pattern.converters}
        urls.append(reverse(pattern.name, kwargs=kwargs))
    assert urls, "no URL of the URLconf is a workspace_view"
    return urls


def fetch(client, url: str, **data):
    """GET the URL; an action that only takes POST is POSTed instead."""
    response = client.get(url, data)
    if response.status_code == 405:
        response = client.post(url, data)
    return response


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@dataclass
class Outsiders:
    """Two agents' books, with an upload and a weekly report each."""

    books: Books
    my_job: ImportJob
    their_job: ImportJob
    my_report: WeeklyReport
    their_report: WeeklyReport


def weekly_report(agent, week_start) -> WeeklyReport:
    report = WeeklyReport.objects.create(
        agent=agent,
        week_start=week_start,
        csv_name=f"{week_start}/agent-{agent.pk}.csv",
        chart_name=f"{week_start}/agent-{agent.pk}.svg",
    )
    for name in (report.csv_name, report.chart_name):  # the 404s must come from the scoping
        report_path(name).parent.mkdir(parents=True, exist_ok=True)
        report_path(name).write_text(f"{agent.email}\n")
    return report


@pytest.fixture
def books(db, settings, tmp_path) -> Outsiders:
    settings.REPORTS_DIR = tmp_path / "reports"
    books = two_books(timezone.localdate())
    week_start = timezone.localdate() - timedelta(days=timezone.localdate().weekday() + 7)
    return Outsiders(
        books=books,
        my_job=make_import_job(
            books.mine,
            original_name="alice-book.csv",
            stored_name="2026/01/alice.csv",
            status=ImportJob.Status.SUCCEEDED,
            rejected_rows=[{"line": 2, "policy_number": "ALICE-9", "reason": "bad"}],
        ),
        their_job=make_import_job(
            books.theirs,
            original_name="bruno-book.csv",
            stored_name="2026/01/bruno.csv",
            status=ImportJob.Status.FAILED,
            rejected_rows=[{"line": 2, "policy_number": "BRUNO-9", "reason": "bad"}],
        ),
        my_report=weekly_report(books.mine, week_start),
        their_report=weekly_report(books.theirs, week_start),
    )


@pytest.fixture
def no_sending(monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.send_batch, "delay", sent.extend)
    monkeypatch.setattr(
        import_tasks.run_import_job,
        "apply_async",
        lambda **options: sent.append(import_tasks.run_import_job.name),
    )
    return sent


def objects_of(books: Outsiders, *, whose: str) -> dict[str, int]:
    theirs = whose == "theirs"
    return {
        "policy_id": (books.books.their_policy if theirs else books.books.my_policy).pk,
        "notification_id": (books.books.their_notice if theirs else books.books.my_notice).pk,
        "job_id": (books.their_job if theirs else books.my_job).pk,
        "report_id": (books.their_report if theirs else books.my_report).pk,
    }


def test_the_walk_finds_every_part_of_the_workspace(books):
    names = {pattern.name for pattern in scoped_patterns()}
    assert {
        "workspace:notices",
        "workspace:notices-csv",
        "workspace:expiries",
        "workspace:dashboard",
        "workspace:policy",
        "workspace:calls",
        "workspace:record-call",
        "workspace:renew",
        "workspace:retry",
        "uploads:upload",
        "uploads:job",
        "uploads:progress",
        "uploads:rejected",
        "uploads:rerun",
        "reports:list",
        "reports:csv",
        "reports:chart",
    } <= names
    assert "login" not in names  # only the views wrapped by workspace_view


def test_another_agents_objects_answer_404_on_every_url(client, books, no_sending):
    client.login(username="alice", password=PASSWORD)
    their_urls = scoped_urls(objects_of(books, whose="theirs"), naming_an_object=True)
    assert their_urls, "no URL names an object"
    for url in their_urls:
        response = fetch(client, url, new_expiry_date="2099-01-01")
        assert response.status_code == 404, url
    their_notice = Notification.objects.get(pk=books.books.their_notice.pk)
    assert their_notice.status == Notification.Status.FAILED
    books.books.their_policy.refresh_from_db()
    assert books.books.their_policy.expiry_date == timezone.localdate() + timedelta(days=25)
    books.their_job.refresh_from_db()
    assert (books.their_job.status, books.their_job.attempt) == (ImportJob.Status.FAILED, 1)
    assert no_sending == []


def test_an_agents_own_objects_answer_on_every_url(client, books, no_sending):
    """The other side of the 404s above: the same URLs work for their owner."""
    client.login(username="alice", password=PASSWORD)
    login = reverse("login")
    for url in scoped_urls(objects_of(books, whose="mine")):
        response = fetch(client, url)
        assert response.status_code in (200, 302), url
        if response.status_code == 302:
            assert not response["Location"].startswith(login), url


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"q": "BRUNO-1"},
        {"q": "Zimmer"},
        {"status": "failed"},
        {"channel": "email", "product_line": "auto"},
        {"due_from": "2000-01-01", "due_to": "2100-01-01"},
    ],
)
def test_lists_filters_searches_and_exports_show_none_of_another_agents_book(client, books, query):
    client.login(username="alice", password=PASSWORD)
    # The search box echoes what was typed; a row, a link or a CSV line would be a leak.
    leaks = (
        'data-policy="BRUNO-1"',
        ">BRUNO-1<",
        "BRUNO-1,",
        "Zed Zimmer",
        reverse("workspace:policy", args=[books.books.their_policy.pk]),
        "bruno-book.csv",
        reverse("uploads:job", args=[books.their_job.pk]),
        reverse("reports:csv", args=[books.their_report.pk]),
    )
    for url in scoped_urls(objects_of(books, whose="mine"), naming_an_object=False):
        response = fetch(client, url, **query)
        assert response.status_code == 200, url
        content = body(response)
        for leak in leaks:
            assert leak not in content, (url, leak)


def test_anonymous_visitors_are_sent_to_log_in_from_every_url(client, books, no_sending):
    login = reverse("login")
    for url in scoped_urls(objects_of(books, whose="mine")):
        for response in (client.get(url), client.post(url)):
            assert response.status_code == 302, url
            assert response["Location"].startswith(f"{login}?next="), url
    assert no_sending == []


def test_a_user_who_is_no_agent_gets_403_and_no_data_on_every_url(client, books, no_sending):
    get_user_model().objects.create_user("visitor", password=PASSWORD)
    client.login(username="visitor", password=PASSWORD)
    for url in scoped_urls(objects_of(books, whose="mine")):
        for response in (client.get(url), client.post(url)):
            assert response.status_code == 403, url
            content = body(response)
            for secret in ("ALICE-1", "BRUNO-1", "Ann Alder", "Zed Zimmer", "alice-book.csv"):
                assert secret not in content, url
    assert no_sending == []


def assert_nothing_changed(books: Outsiders) -> None:
    today = timezone.localdate()
    for notice in (books.books.my_notice, books.books.their_notice):
        notice.refresh_from_db()
        assert notice.status == Notification.Status.FAILED
    books.books.my_policy.refresh_from_db()
    books.books.their_policy.refresh_from_db()
    assert books.books.my_policy.expiry_date == today + timedelta(days=20)
    assert books.books.their_policy.expiry_date == today + timedelta(days=25)
    books.their_job.refresh_from_db()
    assert (books.their_job.status, books.their_job.attempt) == (ImportJob.Status.FAILED, 1)
    assert ImportJob.objects.count() == 2


def an_upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("book.csv", b"policy_number\n", content_type="text/csv")


@pytest.mark.parametrize("roles", [(), ("Template editors",)], ids=["no role", "template editor"])
def test_staff_without_a_book_permission_get_403_and_no_data_on_every_url(
    client, books, no_sending, staff_roles, roles
):
    client.force_login(make_staff("clerk", roles=roles))
    for url in scoped_urls(objects_of(books, whose="mine")):
        for response in (client.get(url), client.post(url, {"new_expiry_date": "2099-01-01"})):
            assert response.status_code == 403, url
            content = body(response)
            for secret in ("ALICE-1", "BRUNO-1", "Ann Alder", "Zed Zimmer", "alice-book.csv"):
                assert secret not in content, url
    assert_nothing_changed(books)
    assert no_sending == []


def test_read_only_support_reads_every_book_and_changes_nothing(
    client, books, no_sending, staff_roles
):
    client.force_login(make_staff("helpdesk", roles=["Support (read-only)"]))
    for whose in ("mine", "theirs"):
        for url in scoped_urls(objects_of(books, whose=whose)):
            response = client.get(url)
            if response.status_code == 405:  # an action: refused, in plain words
                response = client.post(url, {"new_expiry_date": "2099-01-01"})
                assert response.status_code == 403, url
                assert "may read these pages but not" in body(response), url
            else:
                assert response.status_code == 200, url
    upload = client.post(reverse("uploads:upload"), {"file": an_upload()})
    assert upload.status_code == 403
    page = client.get(reverse("workspace:policy", args=[books.books.their_policy.pk]))
    assert 'id="renew-form"' not in page.content.decode()
    assert 'id="retry-' not in page.content.decode()
    assert_nothing_changed(books)
    assert no_sending == []


def test_renewal_admins_work_every_agents_book(client, books, no_sending, staff_roles):
    client.force_login(make_staff("boss", roles=["Renewal admins"]))
    content = client.get(reverse("workspace:notices")).content.decode()
    assert "ALICE-1" in content
    assert "BRUNO-1" in content
    their_policy = books.books.their_policy
    page = client.get(reverse("workspace:policy", args=[their_policy.pk])).content.decode()
    assert 'id="renew-form"' in page

    client.post(reverse("workspace:retry", args=[books.books.their_notice.pk]))
    books.books.their_notice.refresh_from_db()
    assert books.books.their_notice.status == Notification.Status.QUEUED
    client.post(
        reverse("workspace:renew", args=[their_policy.pk]), {"new_expiry_date": "2099-01-01"}
    )
    client.post(reverse("uploads:upload"), {"file": an_upload()})

    their_policy.refresh_from_db()
    assert their_policy.expiry_date.isoformat() == "2099-01-01"
    assert ImportJob.objects.count() == 3


def test_a_staff_agent_without_a_role_works_their_own_book_only(client, books, no_sending):
    alice = books.books.mine.user
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    client.force_login(alice)

    for url in scoped_urls(objects_of(books, whose="theirs"), naming_an_object=True):
        assert fetch(client, url, new_expiry_date="2099-01-01").status_code == 404, url
    content = client.get(reverse("workspace:notices")).content.decode()
    assert "ALICE-1" in content
    assert "BRUNO-1" not in content
    assert_nothing_changed(books)


def test_the_roles_are_shipped_as_groups(staff_roles):
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "Renewal admins",
        "Template editors",
        "Support (read-only)",
    }
    editors = Group.objects.get(name="Template editors").permissions.values_list(
        "codename", flat=True
    )
    assert "change_messagetemplate" in editors
    assert "view_all_books" not in editors
