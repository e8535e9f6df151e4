"""Common class names onto a model's taxonomy, so standard datasets train and evaluate as they are.

A source name maps to the first taxonomy class that is the name itself, ends with it
(".../tanker"), or starts with the prefix the common-names table gives it ("bus" -> a
"vehicle/bus..." class, else a "vehicle/truck..." one). A user's class map always wins.
"""

from __future__ import annotations

from casemate.factory.datasets import ClassMap

# name -> prefixes tried in order (DOTA, COCO, xView, darknet names, KIT AIS).
COMMON: dict[str, tuple[str, ...]] = {
    "car": ("vehicle/car",), "sedan": ("vehicle/car",), "van": ("vehicle/van", "vehicle/car"),
    "small-vehicle": ("vehicle/car",), "small vehicle": ("vehicle/car",), "vehicle": ("vehicle/car",),
    # a truck of no stated kind is a box truck, not a tanker
    "truck": ("vehicle/truck/box_truck", "vehicle/truck"),
    "large-vehicle": ("vehicle/truck/box_truck", "vehicle/truck"),
    "large vehicle": ("vehicle/truck/box_truck", "vehicle/truck"),
    "bus": ("vehicle/bus", "vehicle/truck/box_truck", "vehicle/truck"),
    "minibus": ("vehicle/bus", "vehicle/van", "vehicle/truck/box_truck", "vehicle/truck"),
    "tanker": ("vehicle/truck/tanker",),
    "boat": ("ship/boat",), "motorboat": ("ship/boat",), "ship": ("ship/cargo", "ship"), "vessel": ("ship",),
    "plane": ("aircraft/airliner", "aircraft"), "airplane": ("aircraft/airliner", "aircraft"),
    "aircraft": ("aircraft",), "helicopter": ("aircraft/helicopter", "aircraft/rotary"),
}


def map_name(name: str, taxonomy: list[str]) -> str | None:
    if name in taxonomy:
        return name
    for t in taxonomy:
        if t.rsplit("/", 1)[-1] == name:
            return t
    for prefix in COMMON.get(name.lower(), ()):
        for t in taxonomy:
            if t == prefix or t.startswith(prefix + "/"):
                return t
    return None


def default_class_map(source: list[str], taxonomy: list[str], user: ClassMap | None = None) -> ClassMap:
    """The user's mapping, completed with common names; unmapped names map to "" (dropped)."""
    m = dict(user.mapping) if user else {}
    for name in source:
        if name not in m:
            m[name] = map_name(name, taxonomy) or ""
    return ClassMap(m)
