"""What the synthesizer did with its references, from saved results lines."""

from __future__ import annotations

from a2r_graph.eval.outcomes import outcome, outcomes_table, synthesis_outcomes
from tests.result_lines import result_line, saved_path, synthesis


def line(boxes, synthesized, a2r_correct, cons_correct):
    paths = [saved_path(boxed=b) for b in boxes]
    cell = synthesis(a2r_boxed=synthesized, a2r_correct=a2r_correct, cons_correct=cons_correct)
    return result_line(paths=paths, by_n={"4": cell})


def refs(*boxes):
    return [saved_path(boxed=b) for b in boxes]


def test_each_synthesis_is_classified_against_its_references():
    paths = refs("12", "12", "\\frac{1}{2}", None)
    assert outcome(synthesis(a2r_boxed="12.0"), paths) == "majority"
    assert outcome(synthesis(a2r_boxed="0.5"), paths) == "minority"
    assert outcome(synthesis(a2r_boxed="7"), paths) == "new"
    assert outcome(synthesis(a2r_boxed=None), paths) == "none"
    assert outcome(synthesis(a2r_finish_reason="length"), paths) == "cut"
    # only the first N paths were the references
    assert outcome(synthesis(a2r_boxed="9"), refs("9")) == "majority"


def test_outcomes_count_right_answers_and_rescues_against_the_vote():
    rows = [
        line(["1", "1", "2", "3"], "1", True, True),  # took the majority, right
        line(["1", "2", "2", "3"], "1", True, False),  # a minority answer: rescued
        line(["1", "1", "2", "3"], "5", False, True),  # a new answer: lost
        line(["1", "1", "2", "3"], None, False, False),  # no answer
        result_line(by_n={"2": synthesis()}),  # no synthesis at N=4: not counted
    ]
    found = synthesis_outcomes(rows, 4)
    assert found["outcomes"] == {
        "majority": {"count": 1, "right": 1},
        "minority": {"count": 1, "right": 1},
        "new": {"count": 1, "right": 0},
        "cut": {"count": 0, "right": 0},
        "none": {"count": 1, "right": 0},
    }
    assert (found["rescued"], found["lost"]) == (1, 1)
    table = outcomes_table(found)
    assert "| wrote an answer no reference has | 1 | 0 |" in table
    assert "1 rescued (right where Cons@N was wrong), 1 lost" in table and "of 4." in table
    assert outcomes_table(synthesis_outcomes([], 4)) == ""
