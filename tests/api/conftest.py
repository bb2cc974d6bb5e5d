import json
from dataclasses import dataclass

import pytest
from django.test import Client

from tests.factories import make_agent, make_api_key


@dataclass
class Caller:
    """Another system calling the API with its key, through Django's whole request stack."""

    client: Client
    secret: str

    def call(self, method: str, path: str, body=None, *, raw: bytes | None = None, **headers):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return self.client.generic(
            method,
            "/api/v1/" + path.lstrip("/"),
            data,
            content_type="application/json",
            headers={"Authorization": f"Api-Key {self.secret}", **headers},
        )

    def get(self, path: str, **headers):
        return self.call("GET", path, **headers)

    def put(self, path: str, body=None, **kwargs):
        return self.call("PUT", path, body, **kwargs)

    def post(self, path: str, body=None, **kwargs):
        return self.call("POST", path, body, **kwargs)


@pytest.fixture
def integration(db, client) -> Caller:
    """An all-books, read-write key's caller."""
    _key, secret = make_api_key()
    return Caller(client, secret)


@pytest.fixture
def other_agent(db):
    return make_agent("bruno", "bruno@agency.example")


@pytest.fixture
def agents_integration(db, agent) -> Caller:
    """A caller whose key reaches only `agent`'s book."""
    _key, secret = make_api_key("agency system", agent=agent)
    return Caller(Client(), secret)
