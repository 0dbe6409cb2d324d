"""ALFRED / ALFWorld tables: object and receptacle types, affordances, goal templates, room contents.

The affordance tables are copied from alfworld 0.4.2 `alfworld/gen/constants.py` (MIT licence):
`CAN_CONTAIN` is its `VAL_RECEPTACLE_OBJECTS` restricted to the static receptacles a TextWorld game
lets the agent walk to (movable receptacle objects such as mugs and pans are plain objects there, as in
ALFWorld's text engine where the receptacle-object actions are disabled), without sliced objects
(ALFWorld skips sliced trajectories) and without the openable `Box`. `HEATABLE` ... `SLICEABLE` are its
`VAL_ACTION_OBJECTS`, `OPENABLE` its `OPENABLE_CLASS_LIST`, `RECEPTACLE_OBJECTS` its
`MOVABLE_RECEPTACLES`, `GOAL_SCENES` its `GOALS_VALID`. The goal templates are those of
`alfworld/gen/goal_library.py`. The scene contents (which receptacles and objects a kitchen, living
room, bedroom or bathroom holds) are a simplified summary of the AI2-THOR floor plans.
"""

from __future__ import annotations

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

# goal_library.gdict[task_type]["templates"]; {obj}/{recep}/{toggle} are lower-cased ALFRED type names.
GOAL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "pick_clean_then_place_in_recep": ("put a clean {obj} in {recep}", "clean some {obj} and put it in {recep}"),
    "pick_heat_then_place_in_recep": ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place_in_recep": ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {toggle}", "examine the {obj} with the {toggle}"),
}

# Which scene types a goal is generated in (constants.GOALS_VALID).
GOAL_SCENES: dict[str, frozenset[str]] = {
    "pick_and_place_simple": frozenset({"Kitchen", "LivingRoom", "Bathroom", "Bedroom"}),
    "pick_two_obj_and_place": frozenset({"Kitchen", "LivingRoom", "Bathroom", "Bedroom"}),
    "look_at_obj_in_light": frozenset({"LivingRoom", "Bedroom"}),
    "pick_clean_then_place_in_recep": frozenset({"Kitchen", "Bathroom"}),
    "pick_heat_then_place_in_recep": frozenset({"Kitchen"}),
    "pick_cool_then_place_in_recep": frozenset({"Kitchen"}),
}

# The appliance each transformation needs (alfred.pddl: CleanObject needs SinkBasinType, HeatObject
# MicrowaveType, CoolObject FridgeType) and the verb of its command.
TRANSFORM: dict[str, tuple[str, str]] = {
    "pick_clean_then_place_in_recep": ("clean", "SinkBasin"),
    "pick_heat_then_place_in_recep": ("heat", "Microwave"),
    "pick_cool_then_place_in_recep": ("cool", "Fridge"),
}

OPENABLE = frozenset({"Fridge", "Cabinet", "Microwave", "Drawer", "Safe", "Box"})
RECEPTACLE_OBJECTS = frozenset({"Bowl", "Box", "Cup", "Mug", "Plate", "Pan", "Pot"})
HEATABLE = frozenset({"Apple", "Bread", "Cup", "Egg", "Mug", "Plate", "Potato", "Tomato"})
COOLABLE = frozenset({"Apple", "Bowl", "Bread", "Cup", "Egg", "Lettuce", "Mug", "Pan", "Plate", "Pot", "Potato",
                      "Tomato", "WineBottle"})
CLEANABLE = frozenset({"Apple", "Bowl", "ButterKnife", "Cloth", "Cup", "DishSponge", "Egg", "Fork", "Kettle",
                       "Knife", "Ladle", "Lettuce", "Mug", "Pan", "Plate", "Pot", "Potato", "SoapBar", "Spatula",
                       "Spoon", "Tomato"})
TOGGLEABLE = frozenset({"DeskLamp", "FloorLamp"})
SLICEABLE = frozenset({"Apple", "Bread", "Egg", "Lettuce", "Potato", "Tomato"})
KNIVES = frozenset({"Knife", "ButterKnife"})  # alfred.pddl SliceObject: KnifeType or ButterKnifeType
LAMPS = ("DeskLamp", "FloorLamp")
# Receptacles a lamp stands on in our scenes (lamps are toggleable, not pickupable objects).
LAMP_HOSTS = ("Desk", "SideTable", "Dresser", "Shelf", "CoffeeTable")

# Receptacles that cannot hold a goal's object once transformed with that same appliance
# (the ALFRED sampler never asks to put a heated object back in the microwave, etc.).
TRANSFORM_EXCLUDED_PARENT = {"pick_clean_then_place_in_recep": "SinkBasin",
                             "pick_heat_then_place_in_recep": "Microwave",
                             "pick_cool_then_place_in_recep": "Fridge"}

CAN_CONTAIN: dict[str, frozenset[str]] = {
    'ArmChair': frozenset({'BasketBall', 'Book', 'CellPhone', 'Cloth', 'CreditCard', 'KeyChain', 'Laptop',
        'Newspaper', 'Pillow', 'RemoteControl'}),
    'BathtubBasin': frozenset({'Cloth', 'DishSponge', 'HandTowel', 'SoapBar'}),
    'Bed': frozenset({'BaseballBat', 'BasketBall', 'Book', 'CellPhone', 'Laptop', 'Newspaper', 'Pillow',
        'TennisRacket'}),
    'Cabinet': frozenset({'Book', 'Bowl', 'CD', 'Candle', 'Cloth', 'Cup', 'DishSponge', 'Glassbottle',
        'HandTowel', 'Kettle', 'Ladle', 'Mug', 'Newspaper', 'Pan', 'PepperShaker', 'Plate', 'Plunger', 'Pot',
        'SaltShaker', 'SoapBar', 'SoapBottle', 'SprayBottle', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll',
        'Vase', 'WateringCan', 'WineBottle'}),
    'Cart': frozenset({'Candle', 'Cloth', 'DishSponge', 'HandTowel', 'Mug', 'PaperTowel', 'Plunger',
        'SoapBar', 'SoapBottle', 'SprayBottle', 'Statue', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll',
        'Vase'}),
    'CoffeeMachine': frozenset({'Mug'}),
    'CoffeeTable': frozenset({'AlarmClock', 'Apple', 'BaseballBat', 'BasketBall', 'Book', 'Bowl', 'Bread',
        'ButterKnife', 'CD', 'Candle', 'CellPhone', 'Cloth', 'CreditCard', 'Cup', 'DishSponge', 'Egg', 'Fork',
        'Glassbottle', 'HandTowel', 'Kettle', 'KeyChain', 'Knife', 'Ladle', 'Laptop', 'Lettuce', 'Mug',
        'Newspaper', 'Pan', 'PaperTowel', 'Pen', 'Pencil', 'PepperShaker', 'Plate', 'Pot', 'Potato',
        'RemoteControl', 'SaltShaker', 'SoapBar', 'SoapBottle', 'Spatula', 'Spoon', 'SprayBottle', 'Statue',
        'TennisRacket', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll', 'Tomato', 'Vase', 'Watch',
        'WateringCan', 'WineBottle'}),
    'CounterTop': frozenset({'AlarmClock', 'Apple', 'BaseballBat', 'BasketBall', 'Book', 'Bowl', 'Bread',
        'ButterKnife', 'CD', 'Candle', 'CellPhone', 'Cloth', 'CreditCard', 'Cup', 'DishSponge', 'Egg', 'Fork',
        'Glassbottle', 'HandTowel', 'Kettle', 'KeyChain', 'Knife', 'Ladle', 'Laptop', 'Lettuce', 'Mug',
        'Newspaper', 'Pan', 'PaperTowel', 'Pen', 'Pencil', 'PepperShaker', 'Plate', 'Pot', 'Potato',
        'RemoteControl', 'SaltShaker', 'SoapBar', 'SoapBottle', 'Spatula', 'Spoon', 'SprayBottle', 'Statue',
        'TennisRacket', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll', 'Tomato', 'Vase', 'Watch',
        'WateringCan', 'WineBottle'}),
    'Desk': frozenset({'AlarmClock', 'BasketBall', 'Book', 'Bowl', 'CD', 'Candle', 'CellPhone', 'Cloth',
        'CreditCard', 'Cup', 'Glassbottle', 'KeyChain', 'Laptop', 'Mug', 'Newspaper', 'Pen', 'Pencil',
        'Plate', 'RemoteControl', 'SoapBottle', 'SprayBottle', 'Statue', 'TennisRacket', 'TissueBox',
        'ToiletPaper', 'ToiletPaperRoll', 'Vase', 'Watch', 'WateringCan', 'WineBottle'}),
    'DiningTable': frozenset({'AlarmClock', 'Apple', 'BaseballBat', 'BasketBall', 'Book', 'Bowl', 'Bread',
        'ButterKnife', 'CD', 'Candle', 'CellPhone', 'Cloth', 'CreditCard', 'Cup', 'DishSponge', 'Egg', 'Fork',
        'Glassbottle', 'HandTowel', 'Kettle', 'KeyChain', 'Knife', 'Ladle', 'Laptop', 'Lettuce', 'Mug',
        'Newspaper', 'Pan', 'PaperTowel', 'Pen', 'Pencil', 'PepperShaker', 'Plate', 'Pot', 'Potato',
        'RemoteControl', 'SaltShaker', 'SoapBar', 'SoapBottle', 'Spatula', 'Spoon', 'SprayBottle', 'Statue',
        'TennisRacket', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll', 'Tomato', 'Vase', 'Watch',
        'WateringCan', 'WineBottle'}),
    'Drawer': frozenset({'Book', 'ButterKnife', 'CD', 'Candle', 'CellPhone', 'Cloth', 'CreditCard',
        'DishSponge', 'Fork', 'HandTowel', 'KeyChain', 'Knife', 'Ladle', 'Newspaper', 'Pen', 'Pencil',
        'PepperShaker', 'RemoteControl', 'SaltShaker', 'SoapBar', 'SoapBottle', 'Spatula', 'Spoon',
        'SprayBottle', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll', 'Watch', 'WateringCan'}),
    'Dresser': frozenset({'AlarmClock', 'BasketBall', 'Book', 'Bowl', 'CD', 'Candle', 'CellPhone', 'Cloth',
        'CreditCard', 'Cup', 'Glassbottle', 'KeyChain', 'Laptop', 'Mug', 'Newspaper', 'Pen', 'Pencil',
        'Plate', 'RemoteControl', 'SprayBottle', 'Statue', 'TennisRacket', 'TissueBox', 'ToiletPaper',
        'ToiletPaperRoll', 'Vase', 'Watch', 'WateringCan', 'WineBottle'}),
    'Fridge': frozenset({'Apple', 'Bowl', 'Bread', 'Cup', 'Egg', 'Glassbottle', 'Lettuce', 'Mug', 'Pan',
        'Plate', 'Pot', 'Potato', 'Tomato', 'WineBottle'}),
    'GarbageCan': frozenset({'Apple', 'Bread', 'CD', 'Cloth', 'DishSponge', 'Egg', 'HandTowel', 'Lettuce',
        'Newspaper', 'PaperTowel', 'Pen', 'Pencil', 'Potato', 'SoapBar', 'SoapBottle', 'SprayBottle',
        'TissueBox', 'ToiletPaper', 'ToiletPaperRoll', 'Tomato', 'WineBottle'}),
    'HandTowelHolder': frozenset({'HandTowel'}),
    'LaundryHamper': frozenset({'Cloth'}),
    'Microwave': frozenset({'Apple', 'Bowl', 'Bread', 'Cup', 'Egg', 'Glassbottle', 'Mug', 'Plate', 'Potato',
        'Tomato'}),
    'Ottoman': frozenset({'BasketBall', 'Book', 'CellPhone', 'Cloth', 'CreditCard', 'KeyChain', 'Laptop',
        'Newspaper', 'Pillow', 'RemoteControl'}),
    'Safe': frozenset({'CD', 'CellPhone', 'CreditCard', 'KeyChain', 'Statue', 'Vase', 'Watch'}),
    'Shelf': frozenset({'AlarmClock', 'Book', 'Bowl', 'CD', 'Candle', 'CellPhone', 'Cloth', 'CreditCard',
        'Cup', 'DishSponge', 'Glassbottle', 'HandTowel', 'Kettle', 'KeyChain', 'Mug', 'Newspaper',
        'PaperTowel', 'Pen', 'Pencil', 'PepperShaker', 'Plate', 'Pot', 'RemoteControl', 'SaltShaker',
        'SoapBar', 'SoapBottle', 'SprayBottle', 'Statue', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll',
        'Vase', 'Watch', 'WateringCan', 'WineBottle'}),
    'SideTable': frozenset({'AlarmClock', 'Apple', 'BaseballBat', 'BasketBall', 'Book', 'Bowl', 'Bread',
        'ButterKnife', 'CD', 'Candle', 'CellPhone', 'Cloth', 'CreditCard', 'Cup', 'DishSponge', 'Egg', 'Fork',
        'Glassbottle', 'HandTowel', 'Kettle', 'KeyChain', 'Knife', 'Ladle', 'Laptop', 'Lettuce', 'Mug',
        'Newspaper', 'Pan', 'PaperTowel', 'Pen', 'Pencil', 'PepperShaker', 'Plate', 'Pot', 'Potato',
        'RemoteControl', 'SaltShaker', 'SoapBar', 'SoapBottle', 'Spatula', 'Spoon', 'SprayBottle', 'Statue',
        'TennisRacket', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll', 'Tomato', 'Vase', 'Watch',
        'WateringCan', 'WineBottle'}),
    'SinkBasin': frozenset({'Apple', 'Bowl', 'ButterKnife', 'Cloth', 'Cup', 'DishSponge', 'Egg', 'Fork',
        'Glassbottle', 'HandTowel', 'Kettle', 'Knife', 'Ladle', 'Lettuce', 'Mug', 'Pan', 'Plate', 'Pot',
        'Potato', 'SoapBar', 'Spatula', 'Spoon', 'Tomato'}),
    'Sofa': frozenset({'BasketBall', 'Book', 'CellPhone', 'Cloth', 'CreditCard', 'KeyChain', 'Laptop',
        'Newspaper', 'Pillow', 'RemoteControl'}),
    'StoveBurner': frozenset({'Kettle', 'Pan', 'Pot'}),
    'TVStand': frozenset({'TissueBox'}),
    'Toaster': frozenset(),
    'Toilet': frozenset({'Candle', 'Cloth', 'DishSponge', 'HandTowel', 'Newspaper', 'PaperTowel', 'SoapBar',
        'SoapBottle', 'SprayBottle', 'TissueBox', 'ToiletPaper', 'ToiletPaperRoll'}),
    'ToiletPaperHanger': frozenset({'ToiletPaper', 'ToiletPaperRoll'}),
    'TowelHolder': frozenset({'Towel'}),
}

RECEPTACLE_TYPES = tuple(sorted(CAN_CONTAIN))
OBJECT_TYPES = tuple(sorted({o for objs in CAN_CONTAIN.values() for o in objs}))

# Scene contents. `required`: receptacle types every room of that scene has (one each);
# `optional`: (type, max count) drawn to fill the room; `objects`: object types found there.
SCENES: dict[str, dict[str, tuple]] = {
    "Kitchen": {
        "required": ("CounterTop", "Fridge", "Microwave", "SinkBasin"),
        "optional": (("Cabinet", 8), ("Drawer", 4), ("CounterTop", 2), ("StoveBurner", 4), ("CoffeeMachine", 1),
                     ("Toaster", 1), ("GarbageCan", 1), ("DiningTable", 1), ("Shelf", 2), ("SideTable", 1)),
        "objects": ("Apple", "Bowl", "Bread", "ButterKnife", "CellPhone", "Cup", "DishSponge", "Egg", "Fork",
                    "Glassbottle", "Kettle", "Knife", "Ladle", "Lettuce", "Mug", "Pan", "PaperTowel",
                    "PepperShaker", "Plate", "Pot", "Potato", "SaltShaker", "SoapBottle", "Spatula", "Spoon",
                    "Tomato", "WineBottle"),
    },
    "LivingRoom": {
        "required": ("Sofa", "CoffeeTable"),
        "optional": (("ArmChair", 2), ("SideTable", 2), ("Drawer", 4), ("Cabinet", 4), ("Dresser", 1),
                     ("Shelf", 3), ("TVStand", 1), ("GarbageCan", 1), ("Ottoman", 1), ("DiningTable", 1),
                     ("Safe", 1)),
        "objects": ("Book", "Bowl", "CellPhone", "CreditCard", "KeyChain", "Laptop", "Newspaper",
                    "Pillow", "Plate", "RemoteControl", "Statue", "TissueBox", "Vase", "Watch", "WateringCan"),
    },
    "Bedroom": {
        "required": ("Bed", "Desk"),
        "optional": (("Drawer", 6), ("Dresser", 1), ("Shelf", 4), ("SideTable", 2), ("GarbageCan", 1),
                     ("ArmChair", 1), ("LaundryHamper", 1), ("Safe", 1), ("Cabinet", 2)),
        "objects": ("AlarmClock", "BaseballBat", "BasketBall", "Book", "Bowl", "CD", "CellPhone", "Cloth",
                    "CreditCard", "KeyChain", "Laptop", "Mug", "Pen", "Pencil", "Pillow", "TennisRacket",
                    "TissueBox", "Vase", "Watch"),
    },
    "Bathroom": {
        "required": ("SinkBasin", "Toilet"),
        "optional": (("Cabinet", 4), ("CounterTop", 1), ("Drawer", 4), ("GarbageCan", 1), ("HandTowelHolder", 1),
                     ("TowelHolder", 1), ("ToiletPaperHanger", 1), ("BathtubBasin", 1), ("Shelf", 2),
                     ("Dresser", 1), ("Cart", 1)),
        "objects": ("Candle", "Cloth", "DishSponge", "HandTowel", "Plunger", "SoapBar", "SoapBottle",
                    "SprayBottle", "TissueBox", "ToiletPaper", "Towel"),
    },
}
SCENE_TYPES = tuple(SCENES)


def display_name(type_name: str) -> str:
    """ALFWorld's text name of a type: the lower-cased ALFRED class ("SinkBasin" -> "sinkbasin")."""
    return type_name.lower()
