"""Demo data: agents with logins, customers, and a few hundred policies whose expiry dates are
placed relative to the demo day, so reminders fall due whatever the calendar says."""

import csv
import io
import random
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from policies.importers import COLUMNS, ImportSummary, import_policies
from policies.models import ProductLine, ProductLineName
from policies.services import ensure_agent

FIXTURES_DIR = Path(settings.BASE_DIR) / "fixtures"
DEMO_PASSWORD = "renewly-demo"  # a published demo login, never a real secret
PRODUCT_LINES = ("auto", "home", "life", "travel", "health")
POLICY_COUNT = 300
# Days from the demo day to a policy's expiry: some already past, many inside the usual 1-60
# day reminder windows, the rest beyond them.
EXPIRY_OFFSETS = range(-15, 121)


def seed_demo(*, today: date, policy_count: int = POLICY_COUNT) -> ImportSummary:
    """Create the demo agents and an admin login, then import the demo policies through the
    ordinary CSV importer. Running it again on the same day changes nothing."""
    agents = [
        ensure_agent(password=DEMO_PASSWORD, **row) for row in _read_fixture("demo_agents.csv")
    ]
    _ensure_admin()
    policies_csv = build_demo_policies_csv(
        today=today,
        agent_emails=[agent.email for agent in agents],
        customers=_read_fixture("demo_customers.csv"),
        policy_count=policy_count,
    )
    summary = import_policies(io.BytesIO(policies_csv.encode()))
    _name_product_lines()
    return summary


def _name_product_lines() -> None:
    """The demo's lines (added by the import) named in its customers' languages."""
    for row in _read_fixture("demo_product_lines.csv"):
        line, _ = ProductLine.objects.get_or_create(code=row["code"])
        ProductLineName.objects.get_or_create(
            product_line=line, language=row["language"], defaults={"name": row["name"]}
        )


def build_demo_policies_csv(
    *, today: date, agent_emails: list[str], customers: list[dict], policy_count: int
) -> str:
    rng = random.Random(2026)  # the same demo book every time
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for number in range(1, policy_count + 1):
        customer = customers[number % len(customers)]
        expiry = today + timedelta(days=rng.choice(EXPIRY_OFFSETS))
        writer.writerow(
            {
                "policy_number": f"DEMO-{number:05d}",
                "product_line": PRODUCT_LINES[number % len(PRODUCT_LINES)],
                "customer_name": customer["name"],
                "customer_email": customer["email"],
                "customer_phone": customer["phone"],
                "customer_timezone": customer["timezone"],
                "customer_language": customer["language"],
                "agent_email": agent_emails[number % len(agent_emails)],
                "start_date": (expiry - timedelta(days=365)).isoformat(),
                "expiry_date": expiry.isoformat(),
                "status": "active",
            }
        )
    return out.getvalue()


def _read_fixture(name: str) -> list[dict]:
    with open(FIXTURES_DIR / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _ensure_admin() -> None:
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@renewly.example", DEMO_PASSWORD)
