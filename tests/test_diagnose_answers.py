"""benchmarks/diagnose_answers.py: sorting an answer by where it occurs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from diagnose_answers import source

OBS = ('<information>Doc 1(Title: "Guldet") Guldet is a city in Naeken. It was founded in 1311.\n'
       'Doc 2(Title: "Vandre Krenkael") Vandre Krenkael (born 1723) is from Guldet.</information>')
PROMPT = "[Step 1 observation] When was Guldet founded? Ask 1066.\n" + OBS


def test_answers_are_sorted_by_where_they_occur():
    assert source("1311", "1311", OBS, PROMPT) == "right"
    assert source("Naeken", "1311", OBS, PROMPT) == "other span of doc 1"
    assert source("1723", "1311", OBS, PROMPT) == "from docs 2-3"
    assert source("1066", "1311", OBS, PROMPT) == "elsewhere in prompt"
    assert source("1822", "1311", OBS, PROMPT) == "not in prompt"
    assert source("", "1311", OBS, PROMPT) == "not in prompt"
