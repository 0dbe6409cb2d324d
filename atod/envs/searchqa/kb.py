"""The generated knowledge base: fictional countries, cities, organisations and people, and the
corpus passages that describe them.

Every name is built from syllables and every name word is used by exactly one entity, so a name is
never ambiguous and a search for it finds its own passages first. Facts form a small graph:

    person --born in--> city --located in--> country --capital--> city
    person --member of--> organisation --founded by--> person
    organisation --headquartered in--> city

with years (birth, founding) on people, organisations and cities. Each entity is rendered as corpus
passages in the Search-R1/FlashRAG format `{"id", "contents": "\\"Title\\"\\ntext"}`: one passage for a
country, city or organisation, two for a person (early life, then career).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from bm25s.stopwords import STOPWORDS_EN

_ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "h",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "z",
    "c",
    "sh",
    "j",
    "w",
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou")
_INNER_CODAS = ("", "", "", "", "n", "r", "l", "s")
_FINAL_CODAS = ("", "n", "r", "l", "s", "th", "nd", "rk", "m", "x", "v", "t")

OCCUPATIONS = (
    "painter",
    "poet",
    "architect",
    "astronomer",
    "composer",
    "sculptor",
    "physician",
    "engineer",
    "novelist",
    "botanist",
    "cartographer",
    "mathematician",
    "historian",
    "chemist",
)
ORGANISATION_KINDS = (
    "Society",
    "Institute",
    "Guild",
    "Company",
    "Orchestra",
    "Academy",
    "Foundation",
    "Observatory",
    "League",
    "Press",
)
COUNTRY_FORMS = ("Republic", "Kingdom", "Federation", "Commonwealth", "Principality")
CITY_KINDS = ("port", "market", "mountain", "river", "cathedral", "garrison")

# Words of the passage and question templates: a generated name must not be one of them.
_TEMPLATE_WORDS = frozenset(
    (
        "officially",
        "country",
        "capital",
        "became",
        "independent",
        "city",
        "located",
        "founded",
        "year",
        "river",
        "port",
        "market",
        "mountain",
        "cathedral",
        "garrison",
        "headquartered",
        "born",
        "who",
        "where",
        "which",
        "when",
        "what",
        "was",
        "is",
        "in",
        "of",
        "the",
        "from",
        "member",
        "early",
        "life",
        "career",
        "first",
        "earlier",
        "later",
        "same",
        "were",
        "yes",
        "no",
        "organisation",
        "founder",
        "settlement",
        "established",
        "known",
        "occupation",
        "kingdom",
        "republic",
    )
)


@dataclass(frozen=True)
class Country:
    name: str
    form: str  # "Kingdom" -> officially "the Kingdom of {name}"
    established: int
    capital: str  # a city name

    @property
    def official_name(self) -> str:
        return f"the {self.form} of {self.name}"


@dataclass(frozen=True)
class City:
    name: str
    kind: str
    country: str
    founded: int


@dataclass(frozen=True)
class Organisation:
    name: str  # "Quorvane Guild"
    kind: str  # "Guild"
    founded: int
    founder: str  # a person name
    headquarters: str  # a city name


@dataclass(frozen=True)
class Person:
    name: str  # "Talen Morvik"
    born: int
    birthplace: str  # a city name
    occupation: str
    member_of: str  # an organisation name


@dataclass(frozen=True)
class Passage:
    id: str
    contents: str  # "\"Title\"\ntext"

    @property
    def title(self) -> str:
        return self.contents.partition("\n")[0].strip('"')

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "contents": self.contents}


@dataclass(frozen=True)
class KnowledgeBase:
    countries: tuple[Country, ...]
    cities: tuple[City, ...]
    organisations: tuple[Organisation, ...]
    people: tuple[Person, ...]
    passages: tuple[Passage, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name: e for e in self.entities()})
        object.__setattr__(self, "_passage_ids", _passage_ids_by_title(self.passages))

    def entities(self) -> list[Country | City | Organisation | Person]:
        return [*self.countries, *self.cities, *self.organisations, *self.people]

    def entity(self, name: str) -> Country | City | Organisation | Person:
        return self._by_name[name]  # type: ignore[attr-defined]

    def passage_ids(self, name: str) -> list[str]:
        """Ids of the passages whose title is `name` (its own article), in corpus order."""
        return self._passage_ids[name]  # type: ignore[attr-defined]

    def to_json(self) -> dict[str, Any]:
        return {
            "countries": [asdict(c) for c in self.countries],
            "cities": [asdict(c) for c in self.cities],
            "organisations": [asdict(o) for o in self.organisations],
            "people": [asdict(p) for p in self.people],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], passages: list[Passage]) -> KnowledgeBase:
        return cls(
            countries=tuple(Country(**c) for c in obj["countries"]),
            cities=tuple(City(**c) for c in obj["cities"]),
            organisations=tuple(Organisation(**o) for o in obj["organisations"]),
            people=tuple(Person(**p) for p in obj["people"]),
            passages=tuple(passages),
        )


def _passage_ids_by_title(passages: tuple[Passage, ...]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for passage in passages:
        ids.setdefault(passage.title, []).append(passage.id)
    return ids


class _NameMaker:
    """Fresh capitalised words of 2-3 syllables, never repeated, never an English template word."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self) -> str:
        for _ in range(10_000):
            syllables = self.rng.choice((2, 2, 2, 3))
            word = ""
            for i in range(syllables):
                coda = _FINAL_CODAS if i == syllables - 1 else _INNER_CODAS
                word += self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(coda)
            if len(word) < 4 or word in self.used or word in _TEMPLATE_WORDS or word in STOPWORDS_EN:
                continue
            self.used.add(word)
            return word.capitalize()
        raise RuntimeError("could not generate a fresh name: syllable space exhausted")


def generate_kb(num_entities: int, rng: random.Random) -> KnowledgeBase:
    """A knowledge base of about `num_entities` entities: ~7% countries, 20% cities, 20%
    organisations, the rest people (at least 2 countries, 4 cities, 4 organisations, 8 people)."""
    names = _NameMaker(rng)
    n_countries = max(2, num_entities * 7 // 100)
    n_cities = max(4, num_entities // 5)
    n_orgs = max(4, num_entities // 5)
    n_people = max(8, num_entities - n_countries - n_cities - n_orgs)

    country_names = [names.word() for _ in range(n_countries)]
    cities = []
    for i in range(n_cities):
        # Every country gets at least one city (its capital), the rest are spread at random.
        country = country_names[i] if i < n_countries else rng.choice(country_names)
        cities.append(City(names.word(), rng.choice(CITY_KINDS), country, rng.randint(900, 1700)))
    countries = []
    for name in country_names:
        own_cities = [c.name for c in cities if c.country == name]
        countries.append(
            Country(name, rng.choice(COUNTRY_FORMS), rng.randint(1600, 1950), rng.choice(own_cities))
        )

    # Organisation names first (people need them for membership), founders assigned afterwards.
    org_names = [
        (f"{names.word()} {kind}", kind) for kind in (rng.choice(ORGANISATION_KINDS) for _ in range(n_orgs))
    ]
    people = []
    for _ in range(n_people):
        name = f"{names.word()} {names.word()}"
        people.append(
            Person(
                name,
                rng.randint(1700, 1980),
                rng.choice(cities).name,
                rng.choice(OCCUPATIONS),
                rng.choice(org_names)[0],
            )
        )
    founders = (
        rng.sample(people, n_orgs) if n_orgs <= n_people else [rng.choice(people) for _ in range(n_orgs)]
    )
    organisations = [
        Organisation(name, kind, founder.born + rng.randint(22, 60), founder.name, rng.choice(cities).name)
        for (name, kind), founder in zip(org_names, founders)
    ]
    passages = _render_passages(countries, cities, organisations, people, rng)
    return KnowledgeBase(tuple(countries), tuple(cities), tuple(organisations), tuple(people), passages)


def _a(noun: str) -> str:
    """The noun with its indefinite article: "a painter", "an astronomer"."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _render_passages(countries, cities, organisations, people, rng: random.Random) -> tuple[Passage, ...]:
    """Corpus passages in a fixed order (countries, cities, organisations, people), ids "0", "1", ...
    Each article picks one of two phrasings at random, so that the corpus is not one fixed template."""
    founded_by: dict[str, list[Organisation]] = {}
    for org in organisations:
        founded_by.setdefault(org.founder, []).append(org)
    texts: list[tuple[str, str]] = []
    for c in countries:
        variants = (
            (
                f"{c.name}, officially {c.official_name}, is a country. Its capital is {c.capital}. "
                f"{c.name} became independent in {c.established}."
            ),
            (
                f"{c.name} (officially {c.official_name}) is a country established in {c.established}. "
                f"The capital of {c.name} is {c.capital}."
            ),
        )
        texts.append((c.name, rng.choice(variants)))
    for c in cities:
        variants = (
            f"{c.name} is {_a(c.kind)} city in {c.country}. It was founded in {c.founded}.",
            (
                f"{c.name} is a city located in {c.country}, known as {_a(c.kind)} city. "
                f"The settlement was founded in {c.founded}."
            ),
        )
        texts.append((c.name, rng.choice(variants)))
    for o in organisations:
        kind = o.kind.lower()
        variants = (
            (
                f"The {o.name} is {_a(kind)} founded in {o.founded} by {o.founder}. "
                f"It is headquartered in {o.headquarters}."
            ),
            (
                f"The {o.name} was founded by {o.founder} in {o.founded}. "
                f"The {kind} is headquartered in {o.headquarters}."
            ),
        )
        texts.append((o.name, rng.choice(variants)))
    for p in people:
        variants = (
            (
                f"{p.name} (born {p.born}) is {_a(p.occupation)} from {p.birthplace}. "
                f"Early life: {p.name} was born in {p.birthplace} in {p.born}."
            ),
            f"{p.name} is {_a(p.occupation)}. {p.name} was born in {p.born} in {p.birthplace}.",
        )
        texts.append((p.name, rng.choice(variants)))
        career = f"Career: {p.name} is a member of the {p.member_of}."
        for org in founded_by.get(p.name, []):
            career += f" {p.name} founded the {org.name} in {org.founded}."
        texts.append((p.name, career))
    return tuple(Passage(str(i), f'"{title}"\n{text}') for i, (title, text) in enumerate(texts))
