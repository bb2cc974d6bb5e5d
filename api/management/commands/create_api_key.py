from django.core.management.base import BaseCommand, CommandError

from api.models import ApiKey
from policies.models import Agent


class Command(BaseCommand):
    help = (
        "Create an API key for an integration and print it once: Renewly keeps only its hash. "
        "It reaches every agent's book, or only one agent's with --agent."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the integration the key is for, e.g. 'policy admin'")
        parser.add_argument("--agent", metavar="EMAIL", help="only this agent's book")
        parser.add_argument("--read-only", action="store_true", help="GET requests only")

    def handle(self, *args, name, agent, read_only, **options):
        name = name.strip()
        if not name:
            raise CommandError("Give the key a name: the integration it is for.")
        agent_record = None
        if agent:
            agent_record = Agent.objects.filter(email=agent.strip().lower()).first()
            if agent_record is None:
                raise CommandError(f"No agent has the email {agent!r}.")
        _key, secret = ApiKey.objects.create_key(name=name, agent=agent_record, read_only=read_only)
        scope = f"{agent_record.email}'s book" if agent_record else "every agent's book"
        access = "read-only" if read_only else "read-write"
        self.stderr.write(f"API key '{name}' ({access}, {scope}). Shown once; store it safely:")
        self.stdout.write(secret)
