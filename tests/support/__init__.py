"""Test support: an OTLP receiver and a real-Gunicorn harness."""
