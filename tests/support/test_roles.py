"""The staff roles: set up by migrate and by setup_roles, exactly as support.roles says,
and create_staff makes a staff member who can log in to the admin with the printed
password."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from support.roles import ROLES, SUPERVISOR, SUPPORT

pytestmark = [pytest.mark.django_db, pytest.mark.urls("brokerage.admin_urls")]


def permissions_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def test_migrate_made_the_roles_and_setup_roles_corrects_them():
    assert permissions_of(SUPPORT) == ROLES[SUPPORT]
    assert permissions_of(SUPERVISOR) == ROLES[SUPERVISOR]
    assert "balances.approve_movement" not in ROLES[SUPPORT]
    Group.objects.get(name=SUPPORT).permissions.add(
        Permission.objects.get(codename="approve_movement")
    )

    out = StringIO()
    call_command("setup_roles", stdout=out)

    assert permissions_of(SUPPORT) == ROLES[SUPPORT]
    assert sorted(json.loads(out.getvalue())) == [SUPERVISOR, SUPPORT]


@pytest.mark.parametrize("role", [SUPPORT, SUPERVISOR])
def test_create_staff_prints_a_login_that_works_in_the_admin(role):
    out = StringIO()
    call_command("create_staff", "ann", "--role", role, "--email", "ann@example.com", stdout=out)
    login = json.loads(out.getvalue())

    user = get_user_model().objects.get(username="ann")
    assert user.is_staff and not user.is_superuser
    assert [g.name for g in user.groups.all()] == [role]
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "ann", "password": login["password"]}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_staff", "ann", "--role", role, stdout=StringIO())
