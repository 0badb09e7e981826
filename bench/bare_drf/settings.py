from settings.base import *  # noqa: F403
from settings.base import REST_FRAMEWORK

ROOT_URLCONF = "bench.bare_drf.urls"
MIDDLEWARE = []
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
