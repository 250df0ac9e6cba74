"""FastAPI lifespan extension for gunicorn-otel."""
