from django.urls import path

from alpaca_compat import apis

urlpatterns = [
    path("account", apis.AccountApi.as_view(), name="alpaca-account"),
    path("account/activities", apis.ActivitiesApi.as_view(), name="alpaca-activities"),
    path(
        "account/activities/<str:activity_type>",
        apis.ActivitiesApi.as_view(),
        name="alpaca-activities-of-type",
    ),
    path("orders", apis.OrdersApi.as_view(), name="alpaca-orders"),
    path(
        "orders:by_client_order_id", apis.OrderByClientIdApi.as_view(), name="alpaca-order-by-key"
    ),
    path("orders/<str:order_id>", apis.OrderApi.as_view(), name="alpaca-order"),
    path("positions", apis.PositionsApi.as_view(), name="alpaca-positions"),
    path("positions/<str:symbol>", apis.PositionApi.as_view(), name="alpaca-position"),
    path("assets", apis.AssetsApi.as_view(), name="alpaca-assets"),
    path("assets/<str:symbol>", apis.AssetApi.as_view(), name="alpaca-asset"),
    path("clock", apis.ClockApi.as_view(), name="alpaca-clock"),
]
