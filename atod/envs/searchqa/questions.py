"""Question templates over the knowledge base and the three splits.

Three kinds of templates, as in Search-R1's training and test mixtures:
- one_hop (NQ-like): one fact of one entity ("Where was X born?"), one search;
- bridge (HotpotQA-like): a fact of an entity reached through another ("In which city was the founder
  of Y born?"), two searches, the second for the entity named in the first result;
- comparison (HotpotQA/2Wiki-like): compare one fact of two entities ("Who was born first, X or Z?"),
  two searches.

Every question carries its gold answers and its `hops`: the entities a searcher must look up, in order,
each with the passage that holds the needed fact (the expert's privileged plan). The templates named in
`out_of_domain_templates` make up the `test_out_of_domain` split only; `train` and `test_in_domain` draw
disjoint questions from the other templates.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from atod.envs.searchqa.kb import KnowledgeBase

QuestionKind = Literal["one_hop", "bridge", "comparison"]


@dataclass(frozen=True)
class Question:
    template: str
    kind: QuestionKind
    question: str
    golden_answers: tuple[str, ...]
    hops: tuple[tuple[str, str], ...]  # (entity name to search, id of the passage holding the fact)
    answer_type: str  # "person", "city", "country", "organisation", "year", "occupation", "yes/no"

    def to_payload(self) -> dict:
        return {
            "template": self.template,
            "kind": self.kind,
            "golden_answers": list(self.golden_answers),
            "hops": [list(h) for h in self.hops],
            "answer_type": self.answer_type,
        }


@dataclass(frozen=True)
class Template:
    name: str
    kind: QuestionKind
    answer_type: str
    generate: Callable[[KnowledgeBase, random.Random], Iterator[Question]]


def _bio(kb: KnowledgeBase, person: str) -> str:
    return kb.passage_ids(person)[0]  # early life: birth year, birthplace, occupation


def _career(kb: KnowledgeBase, person: str) -> str:
    return kb.passage_ids(person)[1]  # membership, organisations founded


def _article(kb: KnowledgeBase, name: str) -> str:
    return kb.passage_ids(name)[0]


def _country_answers(kb: KnowledgeBase, country: str) -> tuple[str, ...]:
    return (country, kb.entity(country).official_name)  # type: ignore[union-attr]


# --- one-hop ---------------------------------------------------------------------------------------


def _birthplace(kb, rng):
    for p in kb.people:
        yield Question(
            "birthplace",
            "one_hop",
            f"Where was {p.name} born?",
            (p.birthplace,),
            ((p.name, _bio(kb, p.name)),),
            "city",
        )


def _birth_year(kb, rng):
    for p in kb.people:
        yield Question(
            "birth_year",
            "one_hop",
            f"In which year was {p.name} born?",
            (str(p.born),),
            ((p.name, _bio(kb, p.name)),),
            "year",
        )


def _occupation(kb, rng):
    for p in kb.people:
        yield Question(
            "occupation",
            "one_hop",
            f"What is the occupation of {p.name}?",
            (p.occupation,),
            ((p.name, _bio(kb, p.name)),),
            "occupation",
        )


def _membership(kb, rng):
    for p in kb.people:
        yield Question(
            "membership",
            "one_hop",
            f"Which organisation is {p.name} a member of?",
            (p.member_of,),
            ((p.name, _career(kb, p.name)),),
            "organisation",
        )


def _founder(kb, rng):
    for o in kb.organisations:
        yield Question(
            "founder",
            "one_hop",
            f"Who founded the {o.name}?",
            (o.founder,),
            ((o.name, _article(kb, o.name)),),
            "person",
        )


def _founded_year(kb, rng):
    for o in kb.organisations:
        yield Question(
            "founded_year",
            "one_hop",
            f"When was the {o.name} founded?",
            (str(o.founded),),
            ((o.name, _article(kb, o.name)),),
            "year",
        )


def _headquarters(kb, rng):
    for o in kb.organisations:
        yield Question(
            "headquarters",
            "one_hop",
            f"Where is the {o.name} headquartered?",
            (o.headquarters,),
            ((o.name, _article(kb, o.name)),),
            "city",
        )


def _city_country(kb, rng):
    for c in kb.cities:
        yield Question(
            "city_country",
            "one_hop",
            f"In which country is {c.name}?",
            _country_answers(kb, c.country),
            ((c.name, _article(kb, c.name)),),
            "country",
        )


def _capital(kb, rng):
    for c in kb.countries:
        yield Question(
            "capital",
            "one_hop",
            f"What is the capital of {c.name}?",
            (c.capital,),
            ((c.name, _article(kb, c.name)),),
            "city",
        )


# --- bridge ----------------------------------------------------------------------------------------


def _founder_birthplace(kb, rng):
    for o in kb.organisations:
        founder = kb.entity(o.founder)
        yield Question(
            "founder_birthplace",
            "bridge",
            f"In which city was the founder of the {o.name} born?",
            (founder.birthplace,),
            ((o.name, _article(kb, o.name)), (founder.name, _bio(kb, founder.name))),
            "city",
        )


def _founder_birth_year(kb, rng):
    for o in kb.organisations:
        founder = kb.entity(o.founder)
        yield Question(
            "founder_birth_year",
            "bridge",
            f"In which year was the founder of the {o.name} born?",
            (str(founder.born),),
            ((o.name, _article(kb, o.name)), (founder.name, _bio(kb, founder.name))),
            "year",
        )


def _person_country(kb, rng):
    for p in kb.people:
        yield Question(
            "person_country",
            "bridge",
            f"In which country was {p.name} born?",
            _country_answers(kb, kb.entity(p.birthplace).country),
            ((p.name, _bio(kb, p.name)), (p.birthplace, _article(kb, p.birthplace))),
            "country",
        )


def _hq_country(kb, rng):
    for o in kb.organisations:
        yield Question(
            "hq_country",
            "bridge",
            f"In which country is the {o.name} headquartered?",
            _country_answers(kb, kb.entity(o.headquarters).country),
            ((o.name, _article(kb, o.name)), (o.headquarters, _article(kb, o.headquarters))),
            "country",
        )


def _member_org_founder(kb, rng):
    for p in kb.people:
        org = kb.entity(p.member_of)
        yield Question(
            "member_org_founder",
            "bridge",
            f"Who founded the organisation that {p.name} is a member of?",
            (org.founder,),
            ((p.name, _career(kb, p.name)), (org.name, _article(kb, org.name))),
            "person",
        )


def _capital_founded(kb, rng):
    for c in kb.countries:
        yield Question(
            "capital_founded",
            "bridge",
            f"In which year was the capital of {c.name} founded?",
            (str(kb.entity(c.capital).founded),),
            ((c.name, _article(kb, c.name)), (c.capital, _article(kb, c.capital))),
            "year",
        )


# --- comparison ------------------------------------------------------------------------------------


def _pairs(items: list, rng: random.Random, limit: int) -> Iterator[tuple]:
    """Up to `limit` distinct unordered pairs of `items`, drawn at random (each in random order)."""
    n = len(items)
    limit = min(limit, n * (n - 1) // 2)
    seen: set[tuple[int, int]] = set()
    while len(seen) < limit:
        i, j = rng.sample(range(n), 2)
        if (min(i, j), max(i, j)) in seen:
            continue
        seen.add((min(i, j), max(i, j)))
        yield items[i], items[j]


def _born_first(kb, rng):
    people = list(kb.people)
    for a, b in _pairs(people, rng, 8 * len(people)):
        if a.born != b.born:
            first = a if a.born < b.born else b
            yield Question(
                "born_first",
                "comparison",
                f"Who was born first, {a.name} or {b.name}?",
                (first.name,),
                ((a.name, _bio(kb, a.name)), (b.name, _bio(kb, b.name))),
                "person",
            )


def _founded_first(kb, rng):
    orgs = list(kb.organisations)
    for a, b in _pairs(orgs, rng, 8 * len(orgs)):
        if a.founded != b.founded:
            first = a if a.founded < b.founded else b
            yield Question(
                "founded_first",
                "comparison",
                f"Which was founded first, the {a.name} or the {b.name}?",
                (first.name,),
                ((a.name, _article(kb, a.name)), (b.name, _article(kb, b.name))),
                "organisation",
            )


def _same_birthplace(kb, rng):
    people = list(kb.people)
    by_city: dict[str, list] = {}
    for p in people:
        by_city.setdefault(p.birthplace, []).append(p)
    same = [pair for group in by_city.values() for pair in itertools.combinations(group, 2)]
    rng.shuffle(same)
    different = [
        pair for pair in _pairs(people, rng, 8 * len(people)) if pair[0].birthplace != pair[1].birthplace
    ]
    # Alternate yes and no questions so that neither answer is a free win.
    for pair_yes, pair_no in zip(same, different):
        for (a, b), answer in ((pair_yes, "yes"), (pair_no, "no")):
            yield Question(
                "same_birthplace",
                "comparison",
                f"Were {a.name} and {b.name} born in the same city?",
                (answer,),
                ((a.name, _bio(kb, a.name)), (b.name, _bio(kb, b.name))),
                "yes/no",
            )


def _city_older(kb, rng):
    cities = list(kb.cities)
    for a, b in _pairs(cities, rng, 8 * len(cities)):
        if a.founded != b.founded:
            first = a if a.founded < b.founded else b
            yield Question(
                "city_older",
                "comparison",
                f"Which city was founded earlier, {a.name} or {b.name}?",
                (first.name,),
                ((a.name, _article(kb, a.name)), (b.name, _article(kb, b.name))),
                "city",
            )


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("birthplace", "one_hop", "city", _birthplace),
        Template("birth_year", "one_hop", "year", _birth_year),
        Template("occupation", "one_hop", "occupation", _occupation),
        Template("membership", "one_hop", "organisation", _membership),
        Template("founder", "one_hop", "person", _founder),
        Template("founded_year", "one_hop", "year", _founded_year),
        Template("headquarters", "one_hop", "city", _headquarters),
        Template("city_country", "one_hop", "country", _city_country),
        Template("capital", "one_hop", "city", _capital),
        Template("founder_birthplace", "bridge", "city", _founder_birthplace),
        Template("founder_birth_year", "bridge", "year", _founder_birth_year),
        Template("person_country", "bridge", "country", _person_country),
        Template("hq_country", "bridge", "country", _hq_country),
        Template("member_org_founder", "bridge", "person", _member_org_founder),
        Template("capital_founded", "bridge", "year", _capital_founded),
        Template("born_first", "comparison", "person", _born_first),
        Template("founded_first", "comparison", "organisation", _founded_first),
        Template("same_birthplace", "comparison", "yes/no", _same_birthplace),
        Template("city_older", "comparison", "city", _city_older),
    )
}


def check_out_of_domain_templates(names: tuple[str, ...]) -> None:
    """Refuse unknown names, and a hold-out that leaves the in-domain splits without templates."""
    unknown = [n for n in names if n not in TEMPLATES]
    if unknown:
        raise ValueError(f"unknown Search-QA question templates {unknown}; known: {', '.join(TEMPLATES)}")
    if not names:
        raise ValueError(
            "out_of_domain_templates is empty: the test_out_of_domain split needs at least one template"
        )
    if len(set(names)) == len(TEMPLATES):
        raise ValueError("out_of_domain_templates holds every template: train/test_in_domain would be empty")


def sample_questions(
    kb: KnowledgeBase,
    template_names: list[str],
    counts: dict[str, int],
    one_hop_fraction: float,
    rng: random.Random,
) -> dict[str, list[Question]]:
    """Draw `counts[split]` distinct questions per split from the pool of `template_names`, without
    replacement across the splits (so the splits share no question). Each question is one-hop with
    probability `one_hop_fraction` (multi-hop otherwise), then of a uniformly chosen template of that
    group that still has unused questions."""
    pools: dict[str, list[Question]] = {}
    for name in template_names:
        questions = list(TEMPLATES[name].generate(kb, random.Random(rng.random())))
        rng.shuffle(questions)
        pools[name] = questions
    one_hop = [n for n in template_names if TEMPLATES[n].kind == "one_hop"]
    multi_hop = [n for n in template_names if TEMPLATES[n].kind != "one_hop"]
    seen: set[str] = set()
    out: dict[str, list[Question]] = {}
    for split, count in counts.items():
        drawn: list[Question] = []
        while len(drawn) < count:
            one_hop_left = [n for n in one_hop if pools[n]]
            multi_left = [n for n in multi_hop if pools[n]]
            if not one_hop_left and not multi_left:
                available = sum(len(q) for q in out.values()) + len(drawn)
                raise ValueError(
                    f"Search-QA: templates {template_names} yield only {available} distinct questions over "
                    f"{kb_size(kb)} entities, fewer than the {sum(counts.values())} asked for splits "
                    f"{list(counts)}; raise num_entities or lower the task counts"
                )
            use_one_hop = (rng.random() < one_hop_fraction and one_hop_left) or not multi_left
            question = pools[rng.choice(one_hop_left if use_one_hop else multi_left)].pop()
            if question.question not in seen:
                seen.add(question.question)
                drawn.append(question)
        out[split] = drawn
    return out


def kb_size(kb: KnowledgeBase) -> int:
    return len(kb.entities())
