"""Setting up scheduling data through the HTTP API, shared by the scheduling test modules."""

import itertools
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

_numbers = itertools.count(1)


@dataclass
class SchedulingApi:
    """A client signed in as someone who may change schedules, with one call per setup step;
    each asserts its own success so that a test's failure points at the step that broke."""

    client: httpx.AsyncClient
    headers: dict[str, str]

    async def person(self, type_: str = "resident", **fields: Any) -> dict[str, Any]:
        number = next(_numbers)
        body: dict[str, Any] = {
            "name": f"{type_.title()} {number}",
            "email": f"{type_}{number}@example.com",
            "type": type_,
        }
        if type_ == "resident":
            body["pgy_level"] = 1
        body |= fields
        response = await self.client.post("/api/v1/people", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def blocks(self, start: date, end: date) -> list[dict[str, Any]]:
        span = {"start_date": start.isoformat(), "end_date": end.isoformat()}
        created = await self.client.post("/api/v1/blocks/generate", json=span, headers=self.headers)
        assert created.status_code == 201, created.text
        listed = await self.client.get(
            "/api/v1/blocks", params=span | {"limit": 200}, headers=self.headers
        )
        return list(listed.json()["items"])

    async def rotation(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"Clinic {next(_numbers)}",
            "kind": "clinic",
            "min_residents": 0,
            "max_residents": 4,
            "requires_supervision": False,
        } | fields
        response = await self.client.post("/api/v1/rotations", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def schedule(self, start: date, end: date, name: str = "Spring") -> dict[str, Any]:
        body = {"name": name, "start_date": start.isoformat(), "end_date": end.isoformat()}
        response = await self.client.post("/api/v1/schedules", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def assign(
        self,
        schedule: dict[str, Any],
        person: dict[str, Any],
        block: dict[str, Any],
        rotation: dict[str, Any],
        role: str | None = None,
    ) -> Any:
        """The request (awaitable), so that tests can also send several at once."""
        role = role or ("primary" if person["type"] == "resident" else "supervising")
        return self.client.post(
            f"/api/v1/schedules/{schedule['id']}/assignments",
            json={
                "person_id": person["id"],
                "block_id": block["id"],
                "rotation_id": rotation["id"],
                "role": role,
            },
            headers=self.headers,
        )

    async def assigned(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await self.assign(*args, **kwargs)
        assert response.status_code == 201, response.text
        return dict(response.json())
