from celery import shared_task

from policies.importers import import_policies


@shared_task
def import_policies_file(path: str) -> dict:
    """Import a policy CSV that is already on the shared disk; return the summary counts."""
    summary = import_policies(path)
    return {
        **summary.as_dict(),
        "rejected_rows": [
            {"line": row.line, "reason": row.reason, "policy_number": row.policy_number}
            for row in summary.rejected
        ],
    }
