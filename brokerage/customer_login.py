"""The browsable API's login page (/api-auth/login/), for customers only.

It is on the public port, unlike the admin: a staff member's name is refused before any
password is checked, so it can neither be guessed here nor locked out of the admin (the
lockout, django-axes, counts by user name) from the internet."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import URLPattern, path

from balances.models import Account

NOT_A_CUSTOMER = (
    "Enter a customer's user name and password. Staff sign in to the admin; the customer "
    "API shows a customer's own account only."
)


def is_customer(username: str) -> bool:
    """An active login with a brokerage account, and not staff."""
    users = get_user_model().objects.filter(
        username=username, is_active=True, is_staff=False, is_superuser=False
    )
    return Account.objects.filter(customer__in=users).exists()


class CustomerAuthenticationForm(AuthenticationForm):
    error_messages = {**AuthenticationForm.error_messages, "invalid_login": NOT_A_CUSTOMER}

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username is not None and not is_customer(username):
            raise self.get_invalid_login_error()
        return super().clean()


urlpatterns: list[URLPattern] = [
    path(
        "login/",
        LoginView.as_view(
            template_name="rest_framework/login.html",
            authentication_form=CustomerAuthenticationForm,
        ),
        name="login",
    ),
    path("logout/", LogoutView.as_view(), name="logout"),
]
