"""Common class names map onto a model's taxonomy; a user's map wins; unknown names drop."""

from __future__ import annotations

from casemate.factory.datasets import ClassMap
from casemate.factory.taxonomy import default_class_map, map_name

TAXONOMY = ["vehicle/car/sedan", "vehicle/truck/tanker", "vehicle/truck/box_truck", "ship/boat/motorboat",
            "ship/cargo/container_ship", "aircraft/airliner/narrowbody", "aircraft/fighter/delta_fighter"]


def test_common_names_land_on_the_right_class() -> None:
    expected = {"car": "vehicle/car/sedan", "small-vehicle": "vehicle/car/sedan", "truck": "vehicle/truck/box_truck",
                "bus": "vehicle/truck/box_truck", "minibus": "vehicle/truck/box_truck", "tanker": "vehicle/truck/tanker",
                "ship": "ship/cargo/container_ship", "boat": "ship/boat/motorboat",
                "plane": "aircraft/airliner/narrowbody", "vehicle/car/sedan": "vehicle/car/sedan"}
    assert {k: map_name(k, TAXONOMY) for k in expected} == expected
    assert map_name("cyclist", TAXONOMY) is None and map_name("helicopter", TAXONOMY) is None
    assert map_name("bus", ["vehicle/bus/city", *TAXONOMY]) == "vehicle/bus/city"


def test_a_users_map_wins_and_the_rest_is_completed() -> None:
    m = default_class_map(["car", "bus", "cyclist"], TAXONOMY, ClassMap({"bus": ""}))
    assert m.mapping == {"car": "vehicle/car/sedan", "bus": "", "cyclist": ""}
