"""Where do a warmed-up model's Search-QA answers come from? Teacher-forced, on TRAINING tasks only:

    python benchmarks/diagnose_answers.py [data/models/teacher] [--role teacher] [--tasks 300] [--holdout N]

On the single-hop questions among the first `--tasks` train tasks no `sft_warmup.<role>` demonstration
used (as `diagnose_turns.py`), the noise-free expert searches the question's entity, and the model
answers near-greedily (T = 0.05) given that history and the retrieved passages. Each answer is sorted as
right, another span of the passage that holds the fact (Doc 1), from the other passages, elsewhere in the
prompt, or nowhere in the prompt (from memory). One JSON line: the counts, overall and per template,
then a few wrong answers (question, gold, answer). A model that reads and misses answers from the
passages; one that has memorised its demonstrations answers with facts that are nowhere in the prompt.
`--relabel` asks about a renamed world instead (each prompt's names, each within its kind, and years
through the random maps of `atod.train.relabel`): a model that reads gives the renamed fact, one that
remembers gives the real one ("remembered").
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

from diagnose_turns import Diagnosis, arguments

from atod.agent.prompts import render_prompt
from atod.envs import load_benchmark
from atod.train.relabel import YEARS, relabel_episode
from atod.train.sft import unused_tasks

ANSWER = re.compile(r"<answer>(.*?)</answer>")


def source(answer: str, gold: str, observation: str, prompt: str) -> str:
    """Where `answer` comes from, given the retrieved `observation` and the whole `prompt`."""
    docs = observation.split("Doc ")
    if answer == gold:
        return "right"
    if answer and len(docs) > 1 and answer in docs[1]:
        return "other span of doc 1"
    if answer and answer in observation:
        return "from docs 2-3"
    if answer and answer in prompt:
        return "elsewhere in prompt"
    return "not in prompt"


def name_kinds(kb) -> dict[str, str]:
    """Each name word's kind in the knowledge base (country, city, organisation, first name, last name),
    so that `--relabel` renames a country to another country's name and a person to another person's."""
    kinds = {c.name: "country" for c in kb.countries} | {c.name: "city" for c in kb.cities}
    kinds |= {o.name.split()[0]: "organisation" for o in kb.organisations}
    for person in kb.people:
        first, *_, last = person.name.split()
        kinds |= {first: "first name", last: "last name"}
    return kinds


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0], tasks=300)
    ap.add_argument("--relabel", action="store_true",
                    help="rename the episode's names and renumber its years first (atod.train.relabel): an answer "
                         "that is the real fact instead of the relabelled one is remembered, not read")
    args = ap.parse_args()
    d = Diagnosis.load(args)
    p = d.params
    bench = load_benchmark("searchqa", "data/benchmarks/searchqa")
    pool, demos = d.demonstrations(bench)
    env, rng, relabel_rng, terms = bench.make_env(), random.Random(0), random.Random(1), bench.copy_terms()
    kinds = name_kinds(bench.kb)
    counts: Counter[tuple[str, str]] = Counter()
    wrong: list[tuple[str, str, str]] = []
    for task in unused_tasks(pool, demos, args.tasks):
        result = env.reset(task)
        search = env.expert_action(rng, 0.0)
        after = env.step(search)
        expert = env.expert_action(rng, 0.0)
        if after.done or not expert.startswith("<answer>"):
            continue  # two-hop (the second action searches again) or a comparison
        prompt = render_prompt("searchqa", task.goal, [(result.observation, search)], after.observation,
                               after.admissible_actions, step=1, history_length=p.agent.history_length,
                               think=p.agent.think)
        observation, gold, remembered = after.observation, ANSWER.search(expert).group(1).strip(), None
        if args.relabel:
            remembered = gold
            prompt, observation, expert = relabel_episode([prompt, observation, expert], terms, relabel_rng,
                                                          YEARS["searchqa"], kinds)
            gold = ANSWER.search(expert).group(1).strip()
        got = d.act("searchqa", prompt)
        answer = (m.group(1) if (m := ANSWER.search(got)) else got).strip()
        kind = "remembered (the real fact)" if answer == remembered != gold else source(answer, gold, observation, prompt)
        counts[(task.payload.get("template", ""), kind)] += 1
        if kind != "right" and len(wrong) < 8:
            wrong.append((task.goal, gold, answer))
    total: Counter[str] = Counter()
    for (_, kind), n in counts.items():
        total[kind] += n
    print(json.dumps({"model": args.model, "holdout": d.holdout, "relabel": args.relabel,
                      "answer_turns": sum(total.values()),
                      "source": dict(total),
                      "by_template": {f"{t}|{k}": n for (t, k), n in sorted(counts.items())},
                      "wrong_examples": wrong}), flush=True)


if __name__ == "__main__":
    main()
