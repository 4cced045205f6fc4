"""Schemathesis hooks for ``test_platform_schema.py``: a real login for the operations that need a token.

The token comes from logging in as the test user (``RT_ST_*`` environment variables). A logout
case gets a fresh token of its own, so revoking it never ends the session the other cases use.
"""

from __future__ import annotations

import os

import requests
import schemathesis


def _login() -> str:
    response = requests.post(
        f"{os.environ['RT_ST_BASE_URL']}/api/v1/auth/login",
        json={"email": os.environ["RT_ST_EMAIL"], "password": os.environ["RT_ST_PASSWORD"]},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["token"]


@schemathesis.auth()
class PlatformLogin:
    def get(self, case, ctx):
        return _login()

    def set(self, case, data, ctx):
        token = _login() if case.operation.path.endswith("/auth/logout") else data
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = f"Bearer {token}"
