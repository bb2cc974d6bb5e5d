"""The weekly reports in the workspace: each is listed and served (its CSV and chart) only to
those whose book it covers. What a report counts is tested in tests/notifications."""

from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from notifications import reports
from notifications.models import WeeklyReport
from tests.factories import make_agent, make_staff

WEEK = date(2026, 3, 2)  # a Monday


@pytest.fixture
def agents(db, settings, tmp_path):
    """Alice's, Bruno's and the all-agents report of WEEK, built and stored."""
    settings.REPORTS_DIR = tmp_path / "reports"
    alice = make_agent("alice", "alice@agency.example")
    bruno = make_agent("bruno", "bruno@agency.example")
    reports.build_weekly_reports(week_start=WEEK)
    return alice, bruno


def test_an_agent_lists_and_downloads_only_their_own_reports(client, agents):
    alice, bruno = agents
    own = WeeklyReport.objects.get(agent=alice)
    others = WeeklyReport.objects.get(agent=bruno)
    everyone = WeeklyReport.objects.get(agent=None)
    client.force_login(alice.user)

    page = client.get(reverse("reports:list")).content.decode()
    assert f'id="report-{own.pk}"' in page
    assert f'id="report-{others.pk}"' not in page
    assert f'id="report-{everyone.pk}"' not in page
    download = client.get(reverse("reports:csv", args=[own.pk]))
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    assert b"alice@agency.example" in b"".join(download.streaming_content)
    for report in (others, everyone):
        assert client.get(reverse("reports:csv", args=[report.pk])).status_code == 404
        assert client.get(reverse("reports:chart", args=[report.pk])).status_code == 404


def test_those_who_may_see_every_book_see_every_report_and_others_see_none(client, agents):
    everyone = WeeklyReport.objects.get(agent=None)
    users = get_user_model().objects
    client.force_login(make_staff("boss", permissions=["policies.view_all_books"]))
    chart = client.get(reverse("reports:chart", args=[everyone.pk]))
    assert chart["Content-Type"] == "image/svg+xml"
    assert WeeklyReport.objects.count() == 3
    assert client.get(reverse("reports:list")).content.decode().count('id="report-') == 3

    for nobody in (users.create_user("visitor"), make_staff("template-editor")):
        client.force_login(nobody)
        assert client.get(reverse("reports:list")).status_code == 403
        assert client.get(reverse("reports:chart", args=[everyone.pk])).status_code == 403


def test_a_report_whose_file_is_missing_is_not_found(client, agents):
    alice, _ = agents
    own = WeeklyReport.objects.get(agent=alice)
    reports.report_path(own.csv_name).unlink()
    client.force_login(alice.user)

    assert client.get(reverse("reports:csv", args=[own.pk])).status_code == 404
