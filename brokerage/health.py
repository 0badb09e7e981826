from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from brokerage.metrics import exposition


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: 200 when the database answers (GET or HEAD); unauthenticated, for load
    balancers and `make run`. Whether the system can trade is /readyz."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
    return JsonResponse({"status": "ok", "database": "up"})


@require_safe
def process_metrics(request: HttpRequest) -> HttpResponse:
    """/metrics of the callback receiver and the admin: their processes' own metrics (the
    customer API's adds the database's, execution.metrics)."""
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
