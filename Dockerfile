# The one image behind web, worker and beat in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RENEWLY_VAR_DIR=/var/lib/renewly

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY policies ./policies
COPY notifications ./notifications
COPY workspace ./workspace
RUN pip install --no-cache-dir . && useradd --create-home --uid 1000 renewly \
    && mkdir -p /var/lib/renewly && chown renewly /var/lib/renewly
COPY manage.py ./
COPY fixtures ./fixtures
RUN DEBUG=1 python manage.py collectstatic --noinput

USER renewly
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
