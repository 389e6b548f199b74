"""The cloud REST API (FastAPI): routes, dependencies, schemas, problem+json errors."""
