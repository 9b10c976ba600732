"""LangChain model classes that run offline, inside the worker process."""
