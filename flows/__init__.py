"""Prefect flows: thin orchestration over ``digest.steps``. The only package importing Prefect."""
