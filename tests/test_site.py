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


@pytest.mark.django_db
def test_bad_requests_django_refuses_itself_are_json_too(client, settings):
    settings.DEBUG = False
    too_many = "&".join(f"a{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    for response in (
        client.get(f"/api/v1/account/?{too_many}"),
        client.get("/healthz", HTTP_HOST="elsewhere.example"),
    ):
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"


@pytest.mark.django_db
def test_the_customer_api_does_not_serve_the_admin(client):
    """Staff log in (hashing a password, slow on purpose) on the admin's own process."""
    assert client.get("/admin/login/").status_code == 404


@pytest.mark.django_db
@pytest.mark.urls("brokerage.admin_urls")
def test_the_admin_process_serves_the_admin_and_nothing_of_the_customer_api(client):
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/api/v1/trades/").status_code == 404
    assert client.get("/healthz").status_code == 200
