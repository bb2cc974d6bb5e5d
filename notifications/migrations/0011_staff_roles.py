"""The staff roles a deployment starts with, as Django groups. A staff user sees and does what
their groups (or own permissions) grant: being staff alone opens the admin's door, no book.
Admins may change the groups' permissions in the admin; running this again adds any missing
permission to a role without removing what was granted."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_RECORDS = [
    "policies.view_policy",
    "policies.view_customer",
    "policies.view_agent",
    "policies.view_importjob",
    "notifications.view_notification",
    "notifications.view_deliveryevent",
    "notifications.view_reminderrun",
    "notifications.view_reminderrule",
    "notifications.view_messagetemplate",
    "notifications.view_templatetranslation",
    "notifications.view_weeklyreport",
    "notifications.view_housekeepingrun",
    "notifications.view_consentchange",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.view_crontabschedule",
]
EDIT_WORDING = [
    f"notifications.{action}_{model}"
    for model in ("messagetemplate", "templatetranslation")
    for action in ("view", "add", "change")
]
ROLES = {
    # Tune reminders and the schedule, work every book: renew, retry, upload for any agent.
    "Renewal admins": [
        *VIEW_RECORDS,
        *EDIT_WORDING,
        "policies.view_all_books",
        "policies.import_all_books",
        "policies.change_policy",
        "policies.change_customer",
        "policies.add_agent",
        "policies.change_agent",
        "notifications.change_notification",
        "notifications.add_reminderrule",
        "notifications.change_reminderrule",
        "notifications.delete_reminderrule",
        "django_celery_beat.change_periodictask",
        "django_celery_beat.add_crontabschedule",
        "django_celery_beat.change_crontabschedule",
    ],
    # Write the reminders' words and preview them; no book, no customer records.
    "Template editors": [*EDIT_WORDING, "notifications.view_reminderrule"],
    # Answer questions about any book; change nothing.
    "Support (read-only)": [*VIEW_RECORDS, "policies.view_all_books"],
}


def create_roles(apps, schema_editor):
    # Permissions are made after migrations run; the groups need them now.
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips an app without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for permission in permissions:
            app_label, codename = permission.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def grant(apps, labels: list[str], permissions_by_role: dict[str, list[str]]) -> None:
    """Give each role its permissions (of the apps `labels`), made first if need be: Django
    makes permissions after the migrations run. Later migrations (and other apps') grant through this."""
    for label in labels:
        app_config = apps.get_app_config(label)
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips an app without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in permissions_by_role.items():
        for group in Group.objects.filter(name=name):  # an admin may have removed the role
            for permission in permissions:
                app_label, codename = permission.split(".")
                group.permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("policies", "0003_book_permissions"),
        ("notifications", "0010_template_checks"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
