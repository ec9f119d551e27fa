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
