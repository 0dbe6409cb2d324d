"""The generated product catalogue and WebShop-format goals.

WebShop's 1.18M scraped Amazon products cannot be downloaded here, so we generate a catalogue with
the fields its engine and reward read (web_agent_site/engine/engine.py, goal.py):

- `asin` (`B0` + 8 upper-case letters/digits), `title` (WebShop `Title` and `name`), `category`,
  `query` (the search query the product was scraped under), `product_category` (an Amazon-style
  breadcrumb joined by ` › `), `attributes` (WebShop `Attributes`), `options` (option name -> values,
  e.g. size/color/flavor), `price_tag` (`$x` or `$a to $b`), `price` (the hidden purchase price: the
  single price or a uniform draw inside the range, as WebShop's `product_prices`), `description`,
  `features` (WebShop `BulletPoints`) and `reviews`.
- `title_nouns`: the nouns of the title (brand + product-type nouns). WebShop's type reward parses
  titles with spaCy (`en_core_web_lg`) and keeps NOUN/PROPN tokens; our titles are generated from
  known parts, so the nouns are recorded at generation time instead of parsed.

Goals follow WebShop's synthetic-goal text, `{instruction}` + ` with {k}: {v}, and {k}: {v}` +
`, and price lower than {p:.2f} dollars`, with its price rule: the limit is the larger of two
multiples of 10 drawn from the four just above the product's price. Each goal keeps its target's
attributes (a subset), one value per option, the price limit and the type fields the reward needs.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass, field
from typing import Any

PRICE_RANGE = [10.0 * i for i in range(1, 100)]  # WebShop goal.py: candidate price limits


@dataclass(frozen=True)
class ProductType:
    """A kind of product: how its titles, goals, attributes and options are generated."""

    key: str
    title: str  # title words, e.g. "Dress Shirt"
    nouns: tuple[str, ...]  # the nouns among the title words (for the type reward)
    article: str  # "a", "some", "a pair of": used before the noun phrase in instructions
    query: str  # WebShop `query`: the search the product was scraped under
    breadcrumb: tuple[str, ...]  # WebShop `product_category`, root first
    attributes: tuple[str, ...]  # attribute pool; no attribute's words are a subset of another's
    options: dict[str, tuple[str, ...]]  # option name -> value pool
    price: tuple[float, float]  # (low, high) price in dollars


def _t(key, title, nouns, article, query, breadcrumb, attributes, options, price) -> ProductType:
    return ProductType(
        key,
        title,
        tuple(nouns),
        article,
        query,
        tuple(breadcrumb),
        tuple(attributes),
        {k: tuple(v) for k, v in options.items()},
        price,
    )


SIZES = ["small", "medium", "large", "x-large", "xx-large"]
CLOTHING = ["Clothing, Shoes & Jewelry", "Men", "Clothing"]
BEAUTY = ["Beauty & Personal Care"]
FOOD = ["Grocery & Gourmet Food"]
ELECTRONICS = ["Electronics"]
HOME = ["Home & Kitchen"]

# fmt: off
CATEGORIES: dict[str, list[ProductType]] = {
    "clothing": [
        _t("dress_shirt", "Dress Shirt", ["shirt"], "a", "men dress shirts", CLOTHING + ["Shirts"],
           ["machine wash", "slim fit", "button closure", "long sleeve", "wrinkle free", "cotton blend"],
           {"size": SIZES, "color": ["white", "black", "navy", "light blue", "gray", "pink"]}, (15, 60)),
        _t("hoodie", "Pullover Hoodie", ["hoodie"], "a", "men hoodies", CLOTHING + ["Hoodies"],
           ["fleece lined", "machine wash", "drawstring closure", "relaxed fit", "kangaroo pocket", "polyester cotton"],
           {"size": SIZES,
            "color": ["black", "charcoal", "olive green", "burgundy", "heather gray", "royal blue"]},
           (20, 70)),
        _t("jeans", "Jeans", ["jeans"], "some", "men jeans", CLOTHING + ["Jeans"],
           ["stretch denim", "slim fit", "button closure", "machine wash", "high waist", "straight leg"],
           {"size": ["28w x 30l", "30w x 30l", "32w x 32l", "34w x 32l", "36w x 34l"],
            "color": ["dark wash", "light wash", "black", "medium indigo"]},
           (25, 90)),
        _t("running_shoes", "Running Shoes", ["shoes"], "a pair of", "men running shoes",
           ["Clothing, Shoes & Jewelry", "Men", "Shoes", "Athletic"],
           ["rubber sole", "lace up", "memory foam", "non slip", "breathable mesh", "arch support"],
           {"size": ["7", "8", "9", "10", "11", "12"],
            "color": ["black white", "grey", "navy", "red", "olive"]},
           (30, 120)),
        _t("winter_jacket", "Winter Jacket", ["jacket"], "a", "men winter jackets",
           CLOTHING + ["Jackets & Coats"],
           ["water resistant", "zipper closure", "detachable hood", "quilted lining", "windproof shell", "hand wash"],
           {"size": SIZES, "color": ["black", "army green", "navy", "khaki", "camel"]}, (40, 150)),
        _t("crew_socks", "Crew Socks", ["socks"], "some", "men crew socks", CLOTHING + ["Socks"],
           ["moisture wicking", "cushioned sole", "machine wash", "arch compression", "odor resistant", "cotton blend"],
           {"size": ["small", "medium", "large"],
            "color": ["white", "black", "assorted"],
            "number of items": ["6 pairs", "12 pairs"]},
           (8, 30)),
    ],
    "beauty": [
        _t("shampoo", "Shampoo", ["shampoo"], "a", "shampoo", BEAUTY + ["Hair Care", "Shampoo & Conditioner"],
           ["paraben free", "sulfate free", "natural ingredients", "long lasting", "cruelty free", "color safe"],
           {"size": ["8 fl oz", "12 fl oz", "16 fl oz", "32 fl oz"],
            "scent": ["lavender", "coconut", "mint", "unscented", "citrus"]},
           (6, 35)),
        _t("lipstick", "Lipstick", ["lipstick"], "a", "lipstick", BEAUTY + ["Makeup", "Lips"],
           ["long lasting", "cruelty free", "matte finish", "paraben free", "waterproof formula", "vegan"],
           {"color": ["ruby red", "nude pink", "berry", "coral", "mauve", "plum"]}, (5, 30)),
        _t("face_moisturizer", "Face Moisturizer", ["face", "moisturizer"], "a", "face moisturizer",
           BEAUTY + ["Skin Care", "Face"],
           ["oil free", "fragrance free", "sensitive skin", "hyaluronic acid", "spf 30", "non comedogenic"],
           {"size": ["1.7 oz", "2.5 oz", "3.4 oz"]}, (10, 60)),
        _t("nail_polish", "Nail Polish", ["nail", "polish"], "a", "nail polish", BEAUTY + ["Makeup", "Nails"],
           ["quick dry", "long lasting", "non toxic", "high gloss", "chip resistant", "vegan"],
           {"color": ["cherry red", "baby pink", "classic white", "midnight blue", "lilac", "gold glitter"]},
           (4, 20)),
        _t("hair_dryer", "Hair Dryer", ["hair", "dryer"], "a", "hair dryer",
           BEAUTY + ["Hair Care", "Styling Tools"],
           ["ionic technology", "lightweight design", "low noise", "fast drying", "diffuser attachment", "cool shot"],
           {"color": ["black", "rose gold", "white", "purple"]}, (20, 120)),
    ],
    "food": [
        _t("coffee", "Ground Coffee", ["coffee"], "some", "ground coffee", FOOD + ["Beverages", "Coffee"],
           ["organic", "fair trade", "medium roast", "single origin", "low acid", "whole bean"],
           {"flavor": ["breakfast blend", "vanilla", "hazelnut", "mocha", "caramel"],
            "size": ["12 ounce", "2 pound", "5 pound"]},
           (8, 45)),
        _t("protein_bars", "Protein Bars", ["protein", "bars"], "some", "protein bars",
           FOOD + ["Snacks", "Bars"],
           ["gluten free", "high protein", "low sugar", "non gmo", "keto friendly", "plant based"],
           {"flavor": ["chocolate chip", "peanut butter", "cookie dough", "almond", "berry crunch"],
            "size": ["12 count", "24 count"]},
           (12, 50)),
        _t("green_tea", "Green Tea", ["tea"], "some", "green tea", FOOD + ["Beverages", "Tea"],
           ["organic", "non gmo", "individually wrapped", "sugar free", "antioxidant rich", "loose leaf"],
           {"flavor": ["jasmine", "peach", "honey lemon", "matcha", "ginger"],
            "size": ["20 count", "50 count", "100 count"]},
           (5, 30)),
        _t("olive_oil", "Olive Oil", ["olive", "oil"], "some", "olive oil", FOOD + ["Pantry", "Oils"],
           ["extra virgin", "cold pressed", "organic", "non gmo", "first harvest", "glass bottle"],
           {"size": ["500 ml", "1 liter", "3 liter"],
            "flavor": ["robust", "garlic infused", "lemon infused"]},
           (9, 60)),
        _t("trail_mix", "Trail Mix", ["trail", "mix"], "some", "trail mix",
           FOOD + ["Snacks", "Nuts & Trail Mix"],
           ["gluten free", "non gmo", "no added sugar", "resealable bag", "vegan", "high fiber"],
           {"size": ["8 ounce", "16 ounce", "26 ounce"],
            "flavor": ["sweet salty", "tropical", "dark chocolate", "cranberry nut"]},
           (6, 30)),
    ],
    "electronics": [
        _t("earbuds", "Wireless Earbuds", ["earbuds"], "some", "wireless earbuds",
           ELECTRONICS + ["Headphones", "Earbud Headphones"],
           ["noise cancelling", "bluetooth 5.3", "water resistant", "long battery life", "fast charging", "touch control"],
           {"color": ["black", "white", "navy blue", "rose gold"]}, (20, 150)),
        _t("phone_case", "Phone Case", ["phone", "case"], "a", "phone case",
           ELECTRONICS + ["Cell Phones & Accessories", "Cases"],
           ["shockproof", "wireless charging compatible", "slim design", "raised edges", "scratch resistant", "kickstand"],
           {"color": ["clear", "black", "dark green", "lavender"],
            "model": ["iphone 15", "galaxy s23", "pixel 8", "moto g"]},
           (8, 40)),
        _t("usb_cable", "USB C Cable", ["usb", "cable"], "a", "usb c cable",
           ELECTRONICS + ["Computer Accessories", "Cables"],
           ["fast charging", "braided nylon", "data transfer", "durable connector", "tangle free", "high speed"],
           {"size": ["3 ft", "6 ft", "10 ft"], "color": ["black", "white", "gray", "red"]}, (6, 25)),
        _t("power_bank", "Portable Charger", ["charger"], "a", "portable charger power bank",
           ELECTRONICS + ["Cell Phones & Accessories", "Chargers & Power Adapters"],
           ["fast charging", "dual usb", "led display", "compact design", "high capacity", "airline safe"],
           {"size": ["10000mah", "20000mah", "26800mah"], "color": ["black", "white", "blue"]}, (15, 70)),
        _t("smart_watch", "Smart Watch", ["watch"], "a", "smart watch", ELECTRONICS + ["Wearable Technology"],
           ["heart rate monitor", "sleep tracking", "water resistant", "gps", "long battery life", "touch screen"],
           {"size": ["40mm", "44mm"], "color": ["black", "silver", "pink", "midnight"]}, (40, 300)),
    ],
    "home": [
        _t("bath_towels", "Bath Towels", ["bath", "towels"], "some", "bath towels set",
           HOME + ["Bath", "Towels"],
           ["highly absorbent", "quick dry", "machine washable", "soft cotton", "hotel quality", "fade resistant"],
           {"size": ["set of 2", "set of 4", "set of 6"],
            "color": ["white", "gray", "navy", "sage", "beige"]},
           (15, 60)),
        _t("pillow_covers", "Throw Pillow Covers", ["pillow", "covers"], "some", "throw pillow covers",
           HOME + ["Home Decor", "Pillows"],
           ["hidden zipper", "machine washable", "double sided", "velvet fabric", "decorative", "fade resistant"],
           {"size": ["16 x 16 inch", "18 x 18 inch", "20 x 20 inch"],
            "color": ["mustard", "teal", "blush", "cream", "emerald"]},
           (8, 35)),
        _t("candle", "Scented Candle", ["candle"], "a", "scented candle", HOME + ["Home Decor", "Candles"],
           ["soy wax", "long burning", "natural fragrance", "lead free wick", "hand poured", "gift ready"],
           {"scent": ["vanilla", "lavender", "sea salt", "sandalwood", "fresh linen"],
            "size": ["8 oz", "14 oz"]},
           (8, 40)),
        _t("storage_baskets", "Storage Baskets", ["storage", "baskets"], "some", "storage baskets",
           HOME + ["Storage & Organization", "Baskets"],
           ["foldable", "space saving", "sturdy handles", "woven design", "easy clean", "multipurpose"],
           {"size": ["small", "medium", "large"], "color": ["natural", "gray", "white", "brown"]}, (12, 50)),
        _t("frying_pan", "Frying Pan", ["pan"], "a", "nonstick frying pan",
           HOME + ["Kitchen & Dining", "Cookware"],
           ["nonstick coating", "dishwasher safe", "oven safe", "induction compatible", "pfoa free", "heat resistant handle"],
           {"size": ["8 inch", "10 inch", "12 inch"], "color": ["black", "granite gray", "copper", "blue"]},
           (15, 80)),
    ],
}
# fmt: on

TYPES: dict[str, ProductType] = {t.key: t for types in CATEGORIES.values() for t in types}
CATEGORY_OF: dict[str, str] = {t.key: cat for cat, types in CATEGORIES.items() for t in types}

BRANDS = {
    "clothing": ["Amberline", "Northpeak", "Urbanthread", "Coastwell", "Ridgeway", "Solvane"],
    "beauty": ["Lumiere", "Velora", "Purelle", "Bloomwell", "Aurelia", "Mistique"],
    "food": ["Harvestly", "Greenfield", "Sunmeadow", "Oakvale", "Nutrigo", "Brightbean"],
    "electronics": ["Voltix", "Sonexa", "Kinetiq", "Zentra", "Pulsar", "Nimbus"],
    "home": ["Hearthly", "Cozyhaus", "Linenwood", "Maplecrest", "Homara", "Stillwater"],
}
STYLE_WORDS = ["Classic", "Essential", "Premium", "Everyday", "Modern", "Deluxe", "Original", "Signature"]
BENEFITS = [
    "everyday use",
    "lasting quality",
    "comfort and convenience",
    "reliable performance",
    "great value",
    "easy care",
]
DESCRIPTION_OPENERS = [
    "Meet the {brand} {title}, made for {benefit}.",
    "The {brand} {title} is designed for {benefit}.",
    "Upgrade your routine with the {brand} {title}, built for {benefit}.",
]
REVIEW_TITLES = [
    "Great value",
    "Works as described",
    "Not what I expected",
    "Love it",
    "Decent quality",
    "Would buy again",
]
REVIEW_BODIES = [
    "I have used this {noun} for a few weeks and it does the job.",
    "Good {noun} for the price, shipping was quick.",
    "The {noun} arrived on time and looks like the pictures.",
    "Quality is fine but I expected a bit more from this {noun}.",
]
INSTRUCTION_TEMPLATES = [
    "i need {np}",
    "i am looking for {np}",
    "i want to buy {np}",
    "find me {np}",
    "i would like {np}",
    "i'm looking for {np}",
]


@dataclass(frozen=True)
class Product:
    """One catalogue product (the fields WebShop's engine and reward read; see the module docstring)."""

    asin: str
    title: str
    category: str
    product_type: str
    query: str
    product_category: str
    title_nouns: tuple[str, ...]
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    price_tag: str
    price: float
    description: str
    features: tuple[str, ...]
    reviews: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["options"] = {k: list(v) for k, v in self.options.items()}
        for key in ("title_nouns", "attributes", "features", "reviews"):
            obj[key] = list(obj[key])
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Product:
        return cls(
            asin=obj["asin"],
            title=obj["title"],
            category=obj["category"],
            product_type=obj["product_type"],
            query=obj["query"],
            product_category=obj["product_category"],
            title_nouns=tuple(obj["title_nouns"]),
            attributes=tuple(obj["attributes"]),
            options={k: tuple(v) for k, v in obj["options"].items()},
            price_tag=obj["price_tag"],
            price=float(obj["price"]),
            description=obj["description"],
            features=tuple(obj["features"]),
            reviews=tuple(dict(r) for r in obj["reviews"]),
        )


@dataclass(frozen=True)
class Goal:
    """A WebShop goal: the instruction shown to the agent and what the reward compares against."""

    asin: str  # the product the goal was generated from (any equally matching product scores the same)
    instruction_text: str  # the full goal text shown on every page
    keywords: str  # the instruction's content words (product type + attributes): the expert's query
    attributes: tuple[str, ...]
    goal_options: dict[str, str]
    price_upper: float
    query: str  # the target's WebShop `query`
    product_category: str  # the target's breadcrumb
    name: str  # the target's title
    title_nouns: tuple[str, ...]  # the target title's nouns

    def to_json(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["attributes"], obj["title_nouns"] = list(self.attributes), list(self.title_nouns)
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Goal:
        return cls(
            asin=obj["asin"],
            instruction_text=obj["instruction_text"],
            keywords=obj["keywords"],
            attributes=tuple(obj["attributes"]),
            goal_options=dict(obj["goal_options"]),
            price_upper=float(obj["price_upper"]),
            query=obj["query"],
            product_category=obj["product_category"],
            name=obj["name"],
            title_nouns=tuple(obj["title_nouns"]),
        )


def _asin(rng: random.Random, taken: set[str]) -> str:
    alphabet = string.ascii_uppercase + string.digits
    while True:
        asin = "B0" + "".join(rng.choice(alphabet) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _price(rng: random.Random, low: float, high: float) -> tuple[str, float]:
    """(price tag, hidden purchase price). A third of the products show a price range."""
    base = round(rng.uniform(low, high)) - 0.01
    base = max(base, 0.99)
    if rng.random() < 1 / 3:
        top = round(base * rng.uniform(1.1, 1.5)) + 0.99
        return f"${base:.2f} to ${top:.2f}", round(rng.uniform(base, top), 2)
    return f"${base:.2f}", base


def _product(rng: random.Random, ptype: ProductType, category: str, asin: str) -> Product:
    brand = rng.choice(BRANDS[category])
    n_attrs = rng.randint(3, 4)
    attributes = tuple(sorted(rng.sample(ptype.attributes, n_attrs), key=ptype.attributes.index))
    options = {}
    for name, pool in ptype.options.items():
        k = rng.randint(min(2, len(pool)), len(pool))
        options[name] = tuple(sorted(rng.sample(pool, k), key=pool.index))
    title_attrs = rng.sample(attributes, rng.randint(0, 2))
    title = f"{brand} {rng.choice(STYLE_WORDS)} {ptype.title}"
    if title_attrs:
        title += ", " + " ".join(a.title() for a in title_attrs)
    price_tag, price = _price(rng, *ptype.price)
    noun = ptype.title.lower()
    description = rng.choice(DESCRIPTION_OPENERS).format(
        brand=brand, title=noun, benefit=rng.choice(BENEFITS)
    )
    description += " Highlights: " + ", ".join(attributes[:-1]) + f" and {attributes[-1]}."
    features = tuple(f"{a.capitalize()} for {rng.choice(BENEFITS)}" for a in attributes)
    reviews = tuple(
        {
            "title": rng.choice(REVIEW_TITLES),
            "score": rng.randint(1, 5),
            "body": rng.choice(REVIEW_BODIES).format(noun=noun),
        }
        for _ in range(rng.randint(0, 2))
    )
    return Product(
        asin=asin,
        title=title,
        category=category,
        product_type=ptype.key,
        query=ptype.query,
        product_category=" › ".join(ptype.breadcrumb),
        title_nouns=(brand.lower(),) + ptype.nouns,
        attributes=attributes,
        options=options,
        price_tag=price_tag,
        price=price,
        description=description,
        features=features,
        reviews=reviews,
    )


def generate_catalogue(num_products: int, rng: random.Random) -> list[Product]:
    """`num_products` products, product types taken round-robin in a shuffled order (balanced types)."""
    types = [(cat, t) for cat, ts in CATEGORIES.items() for t in ts]
    order = list(range(len(types)))
    rng.shuffle(order)
    taken: set[str] = set()
    products = []
    for i in range(num_products):
        category, ptype = types[order[i % len(order)]]
        products.append(_product(rng, ptype, category, _asin(rng, taken)))
    return products


def _noun_phrase(ptype: ProductType, attributes: list[str]) -> str:
    if len(attributes) == 1:
        attrs = attributes[0]
    else:
        attrs = ", ".join(attributes[:-1]) + " and " + attributes[-1]
    article = ptype.article
    if article == "a" and attrs[0] in "aeiou":
        article = "an"
    return f"{article} {attrs} {ptype.title.lower()}"


def price_upper_for(price: float, rng: random.Random) -> float | None:
    """WebShop's price limit: the larger of two of the four multiples of 10 above the price (None if
    fewer than two exist, i.e. the goal has no price clause)."""
    candidates = [p for p in PRICE_RANGE if p > price][:4]
    if len(candidates) < 2:
        return None
    return sorted(rng.sample(candidates, 2))[1]


def make_goal(product: Product, rng: random.Random, max_attributes: int) -> Goal:
    """A random goal whose target is `product` (attribute subset, one value per option, price limit)."""
    ptype = TYPES[product.product_type]
    n_attrs = rng.randint(1, min(max_attributes, len(product.attributes)))
    attributes = sorted(rng.sample(product.attributes, n_attrs), key=product.attributes.index)
    goal_options = {name: rng.choice(values) for name, values in product.options.items()}
    instruction = rng.choice(INSTRUCTION_TEMPLATES).format(np=_noun_phrase(ptype, attributes))
    text = instruction
    if goal_options:
        text += " with " + ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
    price_upper = price_upper_for(product.price, rng)
    if price_upper is not None:
        text += f", and price lower than {price_upper:.2f} dollars"
    return Goal(
        asin=product.asin,
        instruction_text=text,
        keywords=" ".join([ptype.title.lower(), *attributes]),
        attributes=tuple(attributes),
        goal_options=goal_options,
        price_upper=price_upper if price_upper is not None else 1_000_000.0,
        query=product.query,
        product_category=product.product_category,
        name=product.title,
        title_nouns=product.title_nouns,
    )


def generate_goals(products: list[Product], n: int, rng: random.Random, max_attributes: int) -> list[Goal]:
    """`n` goals with pairwise different instruction texts, targets cycling through shuffled products."""
    order = list(products)
    rng.shuffle(order)
    goals: list[Goal] = []
    seen: set[str] = set()
    attempts = 0
    while len(goals) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(
                f"could not generate {n} distinct WebShop goals from {len(products)} products; "
                "raise prepare.webshop.num_products or lower the task counts"
            )
        goal = make_goal(order[attempts % len(order)], rng, max_attributes)
        if goal.instruction_text not in seen:
            seen.add(goal.instruction_text)
            goals.append(goal)
    return goals
