# syntax=docker/dockerfile:1
# Build: dependencies from uv.lock in a cached layer, then the project itself.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/pylon
# The same path as in the runtime image: `uv sync` installs the project editable (a .pth pointing here), and
# app/db.py finds alembic/ next to the sources.
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY cli ./cli
COPY alembic ./alembic
COPY alembic.ini README.md ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev

# Runtime: slim image, non-root user, no build tools.
FROM python:3.11-slim
RUN useradd --create-home --uid 1000 pylon && mkdir -p /var/lib/pylon && chown pylon /var/lib/pylon
COPY --from=build /opt/pylon /opt/pylon
COPY --from=build /app /app
ENV PATH=/opt/pylon/bin:$PATH PYLON_HOST=0.0.0.0 PYLON_DATA_DIR=/var/lib/pylon PYLON_LOG_FORMAT=json
WORKDIR /app
USER pylon
EXPOSE 8000
CMD ["pylon", "serve"]
