"""The HTTP timeline service: the ASGI app, its metrics, delivery tracking and OpenAPI description."""
