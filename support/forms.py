"""The support desk's forms: what staff type, before the services check it again."""

from __future__ import annotations

import uuid

from django import forms

from balances.models import Account, StaffMovement


def _new_key() -> str:
    return f"admin-{uuid.uuid4()}"


class MovementForm(forms.Form):
    kind = forms.ChoiceField(choices=StaffMovement.Kind.choices)
    amount = forms.CharField(required=False, help_text="Dollars (deposit, withdrawal).")
    ticker = forms.CharField(required=False, max_length=10, help_text="Shares in or out.")
    quantity = forms.IntegerField(required=False, min_value=1, help_text="Shares in or out.")
    reverses = forms.IntegerField(
        required=False, min_value=1, label="Reverses ledger entry", help_text="Reversal."
    )
    memo = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    # Made when the form is shown: submitting it twice makes one movement.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, initial=_new_key, max_length=64)


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Account.Status.choices)
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class NoteForm(forms.Form):
    text = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    trade_id = forms.IntegerField(required=False, min_value=1, label="About trade (optional)")


class RejectForm(forms.Form):
    note = forms.CharField(max_length=500, label="Why")


class CancelForm(forms.Form):
    reason = forms.CharField(max_length=500, label="Why")
