"""Suite drafting on real Prefect and real GX, with only the chat model scripted: GX checks every
proposal, the sample flags suspicious ones, and the result is only ever a draft."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
import pytest
from great_expectations.core.expectation_suite import ExpectationSuiteSchema
from great_expectations.data_context import project_manager, set_context
from great_expectations.exceptions import DataContextRequiredError
from prefect import flow
from prefect.artifacts import Artifact

from flowkit_prefect.exceptions import ConfigurationError, ModelOutputError, SuiteDraftError
from flowkit_prefect.testing import FakeChatModel
from flowkit_prefect.validation.drafting import SuiteDraft, draft_artifact_key, draft_suite

NO_CACHE = {"cache": False, "retries": 0}


def exp(kind: str, severity: str = "error", rationale: str = "because", **kwargs: Any) -> dict:
    """A proposal as the model writes it: kwargs as a JSON string."""
    return {
        "type": kind,
        "kwargs_json": json.dumps(kwargs),
        "severity": severity,
        "rationale": rationale,
    }


def reply(*proposals: dict) -> str:
    return json.dumps({"expectations": list(proposals)})


def orders(rows: int = 9) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": range(1, rows + 1),
            "status": [("new", "paid", "void")[i % 3] for i in range(rows)],
            "amount": [10.0 + i for i in range(rows)],
        }
    )


def unique_name() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def run_draft(model: FakeChatModel, sample: pd.DataFrame, **options: Any) -> SuiteDraft:
    @flow
    def drafting() -> SuiteDraft:
        return draft_suite(model, sample, **{"config": NO_CACHE, **options})

    return drafting()


@pytest.fixture
def gx_global() -> Iterator[None]:
    """Put back whatever GX context was current before the test."""
    before = current_gx_context()
    yield
    set_context(before)


def current_gx_context() -> Any:
    try:
        return project_manager.get_current_project()
    except DataContextRequiredError:
        return None


def test_valid_proposals_are_accepted_and_the_suite_round_trips(
    harness: str, gx_global: None
) -> None:
    model = FakeChatModel(
        responses=[
            reply(
                exp("expect_column_values_to_not_be_null", column="order_id"),
                exp("expect_column_values_to_be_unique", "warning", column="order_id"),
                exp("expect_column_values_to_be_between", column="amount", min_value=0),
                exp("expect_table_row_count_to_be_between", min_value=1, max_value=10**6),
                # an object where a JSON string is asked for is accepted too
                {
                    "type": "expect_column_values_to_be_in_set",
                    "severity": "error",
                    "kwargs_json": {"column": "status", "value_set": ["new", "paid", "void"]},
                    "rationale": "known statuses",
                },
            )
        ]
    )
    callers_context = gx.get_context(mode="ephemeral")
    name = unique_name()
    draft = run_draft(model, orders(), name=name)

    assert current_gx_context() is callers_context  # drafting never swaps the caller's context
    assert draft.status == "draft" and draft.name == name and draft.model == "fake-chat-model"
    assert draft.rejected == []
    assert [e.type for e in draft.accepted] == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_be_in_set",
    ]
    assert all(e.sample_passes for e in draft.accepted)

    stored = json.loads(json.dumps(draft.suite))  # what a reviewer would load from disk
    suite = gx.ExpectationSuite(**stored)
    assert suite.name == name and len(suite.expectations) == 5
    assert ExpectationSuiteSchema().load(stored)["name"] == name
    first, second = stored["expectations"][:2]
    assert first["kwargs"] == {"column": "order_id"}
    assert first["meta"] == {
        "severity": "error",
        "rationale": "because",
        "drafted_by": "fake-chat-model",
        "sample_passes": True,
    }
    assert (first["severity"], second["severity"]) == ("critical", "warning")  # GX's own field
    assert stored["meta"]["flowkit_status"] == "draft"


def test_proposals_gx_or_the_sample_refuse_are_rejected_with_reasons(harness: str) -> None:
    model = FakeChatModel(
        responses=[
            reply(
                exp("expect_column_values_to_not_be_null", column="order_id"),
                exp("expect_column_values_to_be_purple", column="order_id"),
                exp("expect_column_values_to_not_be_null", column="order_id", mostly=5),
                exp("expect_column_values_to_not_be_null", mostly=0.9),
                exp("expect_column_values_to_not_be_null", column="customer"),
                exp("expect_compound_columns_to_be_unique", column_list=["order_id", "sku"]),
                exp("expect_column_mean_to_be_between", column="status", min_value=1),
                exp("expect_column_values_to_not_be_null", column="order_id"),
                {
                    "type": "expect_column_to_exist",
                    "kwargs_json": "{column: status",
                    "severity": "warning",
                    "rationale": "broken JSON",
                },
                exp("expect_column_to_exist", column="status"),  # the 10th: over the limit
            )
        ]
    )
    name = unique_name()
    draft = run_draft(model, orders(), name=name, max_expectations=9)

    assert [e.type for e in draft.accepted] == ["expect_column_values_to_not_be_null"]
    reasons = {(r.type, json.dumps(r.kwargs, sort_keys=True)): r.reason for r in draft.rejected}
    assert len(reasons) == len(draft.rejected) == 9

    def reason(kind: str, kwargs: Any) -> str:
        return reasons[(kind, json.dumps(kwargs, sort_keys=True))]

    assert "unknown expectation type" in reason(
        "expect_column_values_to_be_purple", {"column": "order_id"}
    )
    mostly = reason("expect_column_values_to_not_be_null", {"column": "order_id", "mostly": 5})
    assert "GX rejects the kwargs" in mostly and "mostly" in mostly
    missing = reason("expect_column_values_to_not_be_null", {"mostly": 0.9})
    assert "GX rejects the kwargs" in missing and "column: field required" in missing
    assert reason("expect_column_values_to_not_be_null", {"column": "customer"}) == (
        "column(s) not in the sample: customer"
    )
    assert "not in the sample: sku" in reason(
        "expect_compound_columns_to_be_unique", {"column_list": ["order_id", "sku"]}
    )
    assert "cannot evaluate it on the sample" in reason(
        "expect_column_mean_to_be_between", {"column": "status", "min_value": 1}
    )
    assert reason("expect_column_values_to_not_be_null", {"column": "order_id"}).startswith(
        "duplicate"
    )
    assert "not JSON" in reason("expect_column_to_exist", "{column: status")
    assert "beyond the limit of 9" in reason("expect_column_to_exist", '{"column": "status"}')

    artifact = Artifact.get(draft_artifact_key(name))
    assert artifact is not None
    text = str(artifact.data)
    assert "DRAFT — review before use" in text
    assert "unknown expectation type" in text and "not in the sample: customer" in text
    assert "expect_column_values_to_not_be_null" in text and "because" in text


def test_an_expectation_the_sample_fails_is_kept_but_flagged(harness: str) -> None:
    model = FakeChatModel(
        responses=[
            reply(
                exp(
                    "expect_column_values_to_be_in_set", column="status", value_set=["new", "paid"]
                ),
                exp("expect_column_max_to_be_between", column="amount", max_value=100),
            )
        ]
    )
    name = unique_name()
    draft = run_draft(model, orders(), name=name)

    flagged, fine = draft.accepted
    assert not flagged.sample_passes and "void" in flagged.sample_note
    assert fine.sample_passes and fine.sample_note == ""
    assert [e["meta"]["sample_passes"] for e in draft.suite["expectations"]] == [False, True]
    artifact = Artifact.get(draft_artifact_key(name))
    assert artifact is not None and "**fails**" in str(artifact.data)


def test_all_rejected_gives_an_empty_draft_not_an_error(harness: str) -> None:
    model = FakeChatModel(
        responses=[reply(exp("expect_the_unexpected", column="status"), exp("nonsense"))]
    )
    name = unique_name()
    draft = run_draft(model, orders(), name=name)

    assert draft.status == "draft" and draft.accepted == [] and len(draft.rejected) == 2
    assert draft.suite["expectations"] == []
    assert gx.ExpectationSuite(**draft.suite).expectations == []
    artifact = Artifact.get(draft_artifact_key(name))
    assert artifact is not None
    assert "DRAFT — review before use" in str(artifact.data)
    assert "the draft suite is empty" in str(artifact.data)


def test_the_draft_file_is_written_atomically_and_nothing_is_applied(
    harness: str, tmp_path: Path, gx_global: None
) -> None:
    model = FakeChatModel(
        responses=[reply(exp("expect_column_values_to_be_between", column="amount", max_value=1))]
    )
    sample = orders()
    before = sample.copy()
    set_context(None)
    draft = run_draft(model, sample, name="orders", output_path=tmp_path / "drafts")

    target = tmp_path / "drafts" / "orders.draft.json"
    assert draft.path == str(target)
    assert json.loads(target.read_text()) == draft.suite
    assert [p.name for p in target.parent.iterdir()] == ["orders.draft.json"]  # no temp files
    assert not draft.accepted[0].sample_passes  # checked on the sample, which is left as it was
    pd.testing.assert_frame_equal(sample, before)
    assert current_gx_context() is None  # the context lent to GX while checking is taken back

    again = run_draft(model, sample, name="orders", output_path=target)  # a draft: replaced
    assert again.path == str(target)


def test_a_file_that_is_not_a_draft_is_never_overwritten(tmp_path: Path) -> None:
    model = FakeChatModel(responses=[reply(exp("expect_column_to_exist", column="status"))])
    reviewed = tmp_path / "orders.draft.json"
    reviewed.write_text(json.dumps({"name": "orders", "expectations": [], "meta": {}}))
    # refused before anything runs, so the task's plain function shows it
    with pytest.raises(ConfigurationError, match="never overwritten"):
        draft_suite.fn(model, orders(), name="orders", output_path=tmp_path)
    with pytest.raises(ConfigurationError, match="not a draft"):
        draft_suite.fn(model, orders(), name="orders", output_path=tmp_path / "orders.json")
    assert json.loads(reviewed.read_text())["meta"] == {}
    assert model.calls == []


def test_an_empty_sample_is_a_configuration_error(harness: str) -> None:
    model = FakeChatModel(responses=[reply()])
    with pytest.raises(ConfigurationError, match="at least one row"):
        run_draft(model, pd.DataFrame(), name="orders")
    with pytest.raises(ConfigurationError, match="at least one row"):
        draft_suite.fn(model, pd.DataFrame(columns=["order_id"]), name="orders")
    with pytest.raises(ConfigurationError, match=r"duplicate column names \['id'\]"):
        draft_suite.fn(model, pd.DataFrame([[1, 2]], columns=["id", "id"]), name="orders")
    assert model.calls == []


def test_unusable_model_output_raises_suite_draft_error(harness: str) -> None:
    model = FakeChatModel(responses=['{"expectations": "all of them"}'])
    with pytest.raises(SuiteDraftError, match="no usable expectation list") as caught:
        run_draft(model, orders(), name=unique_name(), config=NO_CACHE | {"structured_repairs": 1})
    assert isinstance(caught.value, ModelOutputError)
    assert len(model.calls) == 2  # the reply and one bounded repair


def test_the_prompt_holds_a_profile_and_at_most_50_rows_of_values(harness: str) -> None:
    rows = 1000
    sample = pd.DataFrame(
        {
            "token": [f"tok{i:05d}" for i in range(rows)],
            "kind": [("a", "b")[i % 2] for i in range(rows)],
            "n": range(rows),
        }
    )
    model = FakeChatModel(
        responses=[reply(exp("expect_column_values_to_be_unique", column="token"))]
    )
    draft = run_draft(model, sample, name=unique_name(), instructions="tokens never repeat")

    assert draft.accepted[0].sample_passes
    (messages,) = model.calls
    assert model.call_metadata[0]["flowkit_stage"] == "draft-suite"
    text = "\n".join(m.text for m in messages)
    tokens = set(re.findall(r"tok\d{5}", text))
    assert 0 < len(tokens) <= 50
    assert "1000 rows" in text and "tokens never repeat" in text
    assert '"min": 0' in text and '"max": 999' in text and '"values": ["a", "b"]' in text
    assert len(text) < 8000
