import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_healthz_answers_without_credentials(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "up"


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {
        "/api/v1/trades/",
        "/api/v1/trades/{trade_id}/",
        "/api/v1/trades/{trade_id}/cancel/",
        "/api/v1/account/",
    } <= paths.keys()
    assert client.get("/api/docs/").status_code == 200


def test_schema_generates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )
