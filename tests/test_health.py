from litestar.testing import AsyncTestClient


async def test_health_answers_ok(client: AsyncTestClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_the_database(client: AsyncTestClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


async def test_openapi_schema_and_swagger_are_open(client: AsyncTestClient) -> None:
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Pylon"
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200
    assert "swagger" in swagger.text.lower()


async def test_ready_aggregates_every_registered_check(client: AsyncTestClient) -> None:
    import asyncio

    from app import health
    from app.health import CheckResult, ready_checks

    checks = ready_checks(client.app.state)

    async def degraded() -> CheckResult:
        return CheckResult(status="degraded", detail="serving from cache")

    checks["chain"] = degraded
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["chain"]["detail"] == "serving from cache"

    async def hangs() -> CheckResult:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    checks["backend"] = hangs
    original, health.CHECK_TIMEOUT = health.CHECK_TIMEOUT, 0.05
    try:
        response = await client.get("/ready")
    finally:
        health.CHECK_TIMEOUT = original
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["backend"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"
