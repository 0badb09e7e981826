"""What support staff can and cannot do in the admin."""

import pytest
from django.contrib.auth.models import Permission, User

pytestmark = [pytest.mark.django_db, pytest.mark.urls("brokerage.admin_urls")]


@pytest.fixture
def staff_client(client):
    """A support agent given every permission there is, but not a superuser."""
    agent = User.objects.create_user("agent", password="x", is_staff=True)
    agent.user_permissions.set(Permission.objects.all())
    client.force_login(agent)
    return client


def test_nobody_sees_customers_api_tokens(staff_client, admin_client, customer):
    for client in (staff_client, admin_client):
        assert client.get("/admin/api_keys/apikey/").status_code == 404
        assert customer.token not in client.get("/admin/").content.decode()


def test_staff_can_look_at_a_login_but_not_change_it(staff_client, customer):
    page = f"/admin/auth/user/{customer.id}/change/"
    assert staff_client.get(page).status_code == 200

    response = staff_client.post(page, {"username": "taken-over", "is_staff": "on"})
    password = staff_client.post(
        f"/admin/auth/user/{customer.id}/password/", {"password1": "x1!Yz", "password2": "x1!Yz"}
    )

    assert response.status_code == 403 and password.status_code == 403
    user = User.objects.get(id=customer.id)
    assert user.username != "taken-over" and not user.is_staff and not user.has_usable_password()


def test_a_superuser_can_still_manage_logins(admin_client, customer):
    page = f"/admin/auth/user/{customer.id}/change/"
    assert admin_client.get(page).status_code == 200
    assert admin_client.get("/admin/auth/user/add/").status_code == 200
