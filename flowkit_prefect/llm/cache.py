"""A cache policy for LLM calls: keyed on what determines the reply, nothing else.

The key hashes the messages, the model class and its identifying parameters (model name,
temperature, max tokens, ...), and the requested output schema. Run ids, timestamps, clients
and anything that looks like a credential are left out, so a retried or re-run flow replays the
finished call, and a changed API key does not bust the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

_SECRET_HINTS = ("key", "secret", "token", "password", "credential", "auth", "client")


def model_fingerprint(model: Any) -> dict[str, Any]:
    """The model's class and identifying parameters, without credentials or clients."""
    cls = type(model)
    params: dict[str, Any] = {}
    if isinstance(model, BaseChatModel):
        params = dict(model._identifying_params)
    elif hasattr(model, "bound") and hasattr(model, "kwargs"):  # RunnableBinding
        params = {"bound": model_fingerprint(model.bound), "kwargs": dict(model.kwargs)}
    safe = {
        k: v for k, v in sorted(params.items()) if not any(h in k.lower() for h in _SECRET_HINTS)
    }
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "params": safe}


def messages_fingerprint(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """What each message says: type, content, name and tool calls (no ids or metadata)."""
    return [
        {
            "type": m.type,
            "content": m.content,
            "name": getattr(m, "name", None),
            "tool_calls": getattr(m, "tool_calls", None) or None,
            "tool_call_id": getattr(m, "tool_call_id", None),
        }
        for m in messages
    ]


def llm_cache_key(
    model: Any, messages: list[BaseMessage], schema: Any = None, tools: Any = None
) -> str:
    """sha256 of the fingerprint of one call."""
    payload = {
        "model": model_fingerprint(model),
        "messages": messages_fingerprint(messages),
        "schema": schema,
        "tools": tools,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass
class LLMCallCachePolicy(CachePolicy):
    """Cache key for a task with ``model``, ``messages`` and optional ``schema`` inputs."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not inputs or "model" not in inputs or "messages" not in inputs:
            return None
        return "flowkit-llm-" + llm_cache_key(
            inputs["model"], inputs["messages"], inputs.get("schema"), inputs.get("tools")
        )
