"""A cache policy for LLM calls: keyed on what determines the reply, nothing else.

The key hashes the messages, the model class and an allowlist of its identifying settings
(model name, base URL, temperature, max tokens, ...), and the requested output schema and tools.
Run ids, timestamps, clients, timeouts and credentials are left out, so a retried or re-run flow
replays the finished call, and a changed API key does not bust the cache.
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

# The settings that change what a model replies, by the names LangChain providers use. Anything
# else (credentials, timeouts, retries, callbacks, HTTP clients) stays out of the key: a rotated
# API key or a longer timeout must replay, a new max_tokens must not.
IDENTIFYING_FIELDS = frozenset(
    {
        "model",
        "model_name",
        "model_id",
        "model_path",
        "deployment_name",
        "azure_deployment",
        "base_url",
        "openai_api_base",
        "endpoint_url",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "max_new_tokens",
        "num_predict",
        "num_ctx",
        "n_ctx",
        "n",
        "seed",
        "stop",
        "stop_sequences",
        "frequency_penalty",
        "presence_penalty",
        "repeat_penalty",
        "logit_bias",
        "logprobs",
        "response_format",
        "reasoning_effort",
        "reasoning",
        "model_kwargs",
        "extra_body",
        "structured_output_method",
        "token_limit_param",
        "verbosity",
        "top_logprobs",
        "truncation",
        "include",
        "context_management",
        "disabled_params",
        "use_responses_api",
        "use_previous_response_id",
        "output_version",
    }
)

# Every other field of the chat models we ship or document, each left out on purpose: run ids
# and tracing (callbacks, tags, metadata, name), credentials and headers, clients and
# transport, timeouts and retries, streaming and token counting, local speed settings.
# tests/test_llm_cache.py fails on a field in neither set, so a provider's new field is
# classified by a person instead of silently dropped or silently keyed.
NON_IDENTIFYING_FIELDS = frozenset(
    {
        "cache",
        "callbacks",
        "tags",
        "metadata",
        "name",
        "verbose",
        "profile",
        "rate_limiter",
        "custom_get_token_ids",
        "tiktoken_model_name",
        "disable_streaming",
        "streaming",
        "stream_usage",
        "stream_chunk_timeout",
        "openai_api_key",
        "openai_organization",
        "openai_proxy",
        "default_headers",
        "default_query",
        "client",
        "async_client",
        "root_client",
        "root_async_client",
        "http_client",
        "http_async_client",
        "http_socket_options",
        "include_response_headers",
        "request_timeout",
        "max_retries",
        "service_tier",
        "store",
        "prompt_cache_options",
        "n_threads",
    }
)


def model_fingerprint(model: Any) -> dict[str, Any]:
    """The model's class and the identifying settings it has (``IDENTIFYING_FIELDS``).

    A ``RunnableBinding`` (``bind_tools``, ``bind``) is its bound model plus the bound request
    arguments.
    """
    cls = type(model)
    params: dict[str, Any] = {}
    if isinstance(model, BaseChatModel):
        found = dict(model._identifying_params)
        for name in IDENTIFYING_FIELDS & set(type(model).model_fields):
            found.setdefault(name, getattr(model, name, None))
        params = {k: v for k, v in found.items() if k in IDENTIFYING_FIELDS and v is not None}
    elif hasattr(model, "bound") and hasattr(model, "kwargs"):  # RunnableBinding
        params = {"bound": model_fingerprint(model.bound), "kwargs": dict(model.kwargs)}
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "params": dict(sorted(params.items()))}


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
    return digest(payload)


def digest(payload: Any) -> str:
    """sha256 of a JSON-ready fingerprint (keys sorted; other values by ``str``)."""
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
