"""Prefect flows: thin orchestration over ``digest.jobs``. The only package importing Prefect."""
