"""Log-in throttling on the real server (issue 10: "200 wrong passwords in 20 s are all answered, and the right
one still works straight after"): gunicorn with two worker processes, default limits, counts shared in Redis."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from db.session import make_engine, make_session_factory, session_scope
from db.setup import make_dirs, migrate
from db.users import add_token, create_user
from settings import Settings
from tests import services

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path, redis_url: str) -> Iterator[tuple[str, str]]:
    settings = Settings(home=tmp_path, redis_url=redis_url.rsplit("/", 1)[0] + "/11", secret_key="throttle")
    make_dirs(settings)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        token = add_token(session, create_user(session, "radiologist", "the right password"))
    env = services.service_env(
        {"RADBATCH_HOME": str(tmp_path), "RADBATCH_REDIS_URL": settings.effective_redis_url, "RADBATCH_SECRET_KEY": "t"}
    )
    web, base_url = services.start_gunicorn(env, tmp_path / "web.log", workers=2)
    try:
        yield base_url, token
    finally:
        services.stop_process(web)
        engine.dispose()
        import redis

        redis.Redis.from_url(settings.effective_redis_url).flushdb()


def log_in(base_url: str, password: str) -> int:
    browser = requests.Session()  # a fresh client each time, as a script guessing passwords would be
    page = browser.get(f"{base_url}/login").text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    data = {"username": "radiologist", "password": password, "csrf_token": csrf}
    return browser.post(f"{base_url}/login", data=data, allow_redirects=False).status_code


def test_the_right_password_is_refused_after_200_wrong_ones(server):
    base_url, token = server
    answers = Counter(log_in(base_url, f"guess {i}") for i in range(200))
    assert answers == {401: 10, 429: 190}  # RADBATCH_LOGIN_LIMIT_PER_USER: 10 per 15 minutes, across both workers
    assert log_in(base_url, "the right password") == 429
    api = requests.get(f"{base_url}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200  # API tokens are not throttled
