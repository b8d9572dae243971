"""Locust HttpUser load through the example service (loadtests/app), not straight to etcd.

    python loadtests/bench_app.py            (starts etcd, the gunicorn service and locust)
    locust -f loadtests/locustfile_app.py --host http://127.0.0.1:8080   (your own service)

Each user reads the config (served from the workers' prefix caches: no etcd request), and
reads and writes its own key through the workers' geetcd clients. A GET that answers a value
other than the user's last acknowledged write is reported as a failure (``foreign answer``),
so the report would show a worker answering with another request's bytes.
"""

from __future__ import annotations

import uuid

from locust import HttpUser, between, task


class AppUser(HttpUser):
    """Config reads, own-key reads and writes, 5:3:1."""

    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.key = f"u-{uuid.uuid4().hex[:12]}"
        self.value: str | None = None
        self.put()

    @task(5)
    def config(self) -> None:
        self.client.get("/config/color", name="/config/[name]")

    @task(3)
    def get(self) -> None:
        with self.client.get(f"/kv/{self.key}", name="GET /kv/[key]", catch_response=True) as r:
            ok = r.status_code == 200 and self.value is not None
            if ok and r.json().get("value") != self.value:
                r.failure(f"foreign answer: {r.text[:200]}")

    @task(1)
    def put(self) -> None:
        value = uuid.uuid4().hex
        with self.client.put(
            f"/kv/{self.key}", data=value, name="PUT /kv/[key]", catch_response=True
        ) as r:
            if r.status_code == 200:
                self.value = value
            elif "OutcomeUnknown" in r.text:
                self.value = None  # may or may not be applied: do not check the next read
                r.failure("OutcomeUnknown")
