"""The OpenAI-compatible provider end to end against a real server on loopback:
llama-cpp-python's OpenAI API serving the offline model, reached through langchain-openai like
any hosted provider. Chat with usage, structured output, a tool call, and an auth failure."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from prefect import flow
from pydantic import BaseModel, SecretStr

from flowkit_prefect import OpenAIChatModel, invoke_llm, run_tool_agent
from tests.helpers import llama_server

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(tmp_path_factory.mktemp("llama-server")) as url:
        yield url


class Capital(BaseModel):
    city: str


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def _block(url: str, **kw) -> OpenAIChatModel:
    defaults = {"max_tokens": 64, "input_price_per_1k": 0.1, "output_price_per_1k": 0.2}
    return OpenAIChatModel(base_url=url, model="smollm2", **(defaults | kw))


def test_chat_reports_usage_and_cost(harness: str, server_url: str) -> None:
    from flowkit_prefect import track_usage

    @flow
    def run():
        with track_usage() as tracker:
            result = invoke_llm(
                _block(server_url), f"Say hello ({uuid.uuid4().hex[:6]})", config={"cache": False}
            )
        return result, tracker.cost

    result, cost = run()
    assert result.text.strip() and result.input_tokens > 0 and result.output_tokens > 0
    assert cost == pytest.approx((result.input_tokens * 0.1 + result.output_tokens * 0.2) / 1000)


def test_the_reply_limit_reaches_the_server(harness: str, server_url: str) -> None:
    """llama.cpp's server ignores ``max_completion_tokens`` (langchain-openai's name for the
    limit); the block sends ``max_tokens`` to endpoints other than OpenAI's, so it holds."""

    @flow
    def run():
        return invoke_llm(
            _block(server_url, max_tokens=8),
            f"Write a long story about a heron ({uuid.uuid4().hex[:6]}).",
            config={"cache": False},
        )

    assert 0 < run().output_tokens <= 8
    hosted = OpenAIChatModel(model="gpt-4o-mini", api_key=SecretStr("sk-test"), max_tokens=8)
    payload = hosted.get_chat_model()._get_request_payload("hi")  # type: ignore[attr-defined]
    assert payload["max_completion_tokens"] == 8 and "max_tokens" not in payload


def test_a_structured_reply_cut_off_at_the_limit_is_a_model_output_error(
    harness: str, server_url: str
) -> None:
    """The openai client raises LengthFinishReasonError on a reply cut off at max_tokens; the
    layer sends it back like any invalid reply, then gives up with our own error."""
    from flowkit_prefect.exceptions import ModelOutputError

    @flow
    def run():
        return invoke_llm(
            _block(server_url, structured_output_method="json_mode", max_tokens=4),
            f"Describe France as JSON with the key city ({uuid.uuid4().hex[:6]}).",
            output_type=Capital,
            config={"cache": False, "structured_repairs": 1},
        )

    with pytest.raises(ModelOutputError, match="token limit"):
        run()


def test_structured_output_through_function_calling(harness: str, server_url: str) -> None:
    @flow
    def run():
        return invoke_llm(
            _block(server_url, structured_output_method="function_calling"),
            "What is the capital of France? Reply as JSON with the key city.",
            output_type=Capital,
            config={"cache": False},
        )

    result = run()
    assert isinstance(Capital.model_validate(result.parsed).city, str)


def test_tool_call_with_forced_choice(server_url: str) -> None:
    model = _block(server_url).get_chat_model()
    reply = model.bind_tools([multiply], tool_choice="multiply").invoke("What is 6 times 7?")
    [call] = reply.tool_calls
    assert call["name"] == "multiply" and set(call["args"]) == {"a", "b"}


def test_agent_runs_against_the_server(harness: str, server_url: str) -> None:
    @flow
    def run():
        return run_tool_agent(
            _block(server_url),
            [multiply],
            "What is 6 times 7?",
            max_steps=2,
            config={"cache": False},
        )

    result = run()
    assert result.stopped in {"answered", "step_limit"} and result.steps


def test_a_refused_key_fails_fast_without_a_retry_storm(harness: str, server_url: str) -> None:
    """An endpoint that answers 401 (a bad key) is not retried."""
    import http.server
    import threading

    calls = []

    class Deny(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append(self.path)
            body = b'{"error": {"message": "invalid api key", "type": "invalid_request_error"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        block = OpenAIChatModel(
            base_url=f"http://127.0.0.1:{server.server_port}/v1",
            model="m",
            api_key=SecretStr("sk-wrong"),
        )

        @flow
        def run():
            return invoke_llm(block, "hi", config={"cache": False, "retries": 3})

        started = time.monotonic()
        with pytest.raises(Exception, match="invalid api key"):
            run()
        assert len(calls) == 1 and time.monotonic() - started < 15
    finally:
        server.shutdown()
