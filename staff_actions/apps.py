from django.apps import AppConfig


class StaffActionsConfig(AppConfig):
    name = "staff_actions"
    verbose_name = "Staff actions"
