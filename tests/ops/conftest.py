# ops observes the engine: its tests drive the engine with the engine's own test fixtures.
from tests.notifications.conftest import fake_provider, providers, rules  # noqa: F401
