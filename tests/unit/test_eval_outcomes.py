"""What the synthesizer did with its references, from saved results lines."""

from __future__ import annotations

from a2r_graph.eval.outcomes import outcome, outcomes_table, synthesis_outcomes


def line(boxes, synthesized, a2r_correct, cons_correct):
    paths = [{"boxed": b} for b in boxes]
    cell = {"a2r_boxed": synthesized, "a2r_correct": a2r_correct, "cons_correct": cons_correct}
    return {"paths": paths, "by_n": {"4": cell}}


def test_each_synthesis_is_classified_against_its_references():
    refs = ["12", "12", "\\frac{1}{2}", None]
    assert outcome({"a2r_boxed": "12.0"}, [{"boxed": b} for b in refs]) == "majority"
    assert outcome({"a2r_boxed": "0.5"}, [{"boxed": b} for b in refs]) == "minority"
    assert outcome({"a2r_boxed": "7"}, [{"boxed": b} for b in refs]) == "new"
    assert outcome({"a2r_boxed": None}, [{"boxed": b} for b in refs]) == "none"
    cut = {"a2r_boxed": None, "a2r_finish_reason": "length"}
    assert outcome(cut, [{"boxed": b} for b in refs]) == "cut"
    # only the first N paths were the references
    assert outcome({"a2r_boxed": "9"}, [{"boxed": "9"}]) == "majority"


def test_outcomes_count_right_answers_and_rescues_against_the_vote():
    rows = [
        line(["1", "1", "2", "3"], "1", True, True),  # took the majority, right
        line(["1", "2", "2", "3"], "1", True, False),  # a minority answer: rescued
        line(["1", "1", "2", "3"], "5", False, True),  # a new answer: lost
        line(["1", "1", "2", "3"], None, False, False),  # no answer
        {"paths": [], "by_n": {"2": {}}},  # no synthesis at N=4: not counted
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
