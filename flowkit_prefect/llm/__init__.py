"""LLM calls as Prefect tasks: one config object, transient-only retries, real timeouts,
input-keyed caching, structured output with bounded repair, model fallback, usage and cost."""

from flowkit_prefect.llm._cache import LLMCallCachePolicy, llm_cache_key
from flowkit_prefect.llm._call import LLMResult, call_chat_model
from flowkit_prefect.llm._config import DEFAULT_LLM_TASK_CONFIG, LLMTaskConfig
from flowkit_prefect.llm._fanout import amap_llm, map_llm
from flowkit_prefect.llm._tasks import (
    ChatModelSource,
    ainvoke_llm,
    invoke_llm,
    source_label,
)
from flowkit_prefect.llm._usage import (
    USAGE_ARTIFACT_KEY,
    Budget,
    CallUsage,
    UsageTracker,
    publish_usage,
    track_usage,
)

__all__ = [
    "DEFAULT_LLM_TASK_CONFIG",
    "USAGE_ARTIFACT_KEY",
    "Budget",
    "CallUsage",
    "ChatModelSource",
    "LLMCallCachePolicy",
    "LLMResult",
    "LLMTaskConfig",
    "UsageTracker",
    "ainvoke_llm",
    "amap_llm",
    "call_chat_model",
    "invoke_llm",
    "llm_cache_key",
    "map_llm",
    "publish_usage",
    "source_label",
    "track_usage",
]
