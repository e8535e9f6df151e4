"""Johnson ceilings and abstention: a detection never claims more than the resolution allows."""

from __future__ import annotations

import pytest

from casemate.imagery.dri import DEFAULT_CLASSES, DriPolicy, Hierarchy, grade

H = Hierarchy.from_classes(DEFAULT_CLASSES)
P = DriPolicy()
TANKER = DEFAULT_CLASSES.index("vehicle/truck/tanker")
SEDAN = DEFAULT_CLASSES.index("vehicle/car/sedan")


def scores(**kw: float) -> list[float]:
    s = [0.0] * len(DEFAULT_CLASSES)
    for k, v in kw.items():
        s[[c.rsplit("/", 1)[-1] for c in DEFAULT_CLASSES].index(k)] = v
    return s


@pytest.mark.parametrize("px,ceiling", [(1.9, None), (2.0, "D"), (7.9, "D"), (8.0, "R"), (12.7, "R"), (12.8, "I")])
def test_ceilings_follow_johnson(px: float, ceiling: str | None) -> None:
    assert P.ceiling(px) == ceiling


def test_car_at_half_metre_is_detected_not_recognised() -> None:
    # SpaceNet GSD: 0.5 m; a car is 1.8 m wide -> 3.6 px on target.
    g = grade(H, P, scores(sedan=0.99), SEDAN, 1.8 / 0.5)
    assert g.ceiling == "D" and g.dri_level == "D"
    assert g.label == "vehicle, class unknown"
    assert [c["name"] for c in g.class_path] == ["vehicle"]


def test_abstains_to_parent_below_identification_ceiling() -> None:
    g = grade(H, P, scores(tanker=0.95), TANKER, 10.0)  # R ceiling
    assert g.dri_level == "R" and g.label == "truck, type unknown"
    g = grade(H, P, scores(tanker=0.95), TANKER, 20.0)
    assert g.dri_level == "I" and g.label == "tanker"
    assert [c["level"] for c in g.class_path] == ["D", "R", "I"]


def test_abstains_when_the_model_hesitates_between_types() -> None:
    # Plenty of pixels, but the model splits between two truck types: it may claim truck only.
    g = grade(H, P, scores(tanker=0.42, box_truck=0.4), TANKER, 30.0)
    assert g.dri_level == "R" and g.label == "truck, type unknown"
    assert g.class_path[1]["score"] > 0.6  # the truck node gathers both leaves


def test_below_detection_ceiling_claims_nothing() -> None:
    assert grade(H, P, scores(sedan=0.99), SEDAN, 1.0).dri_level is None


def test_calibrated_thresholds_from_manifest() -> None:
    pol = DriPolicy.from_manifest({"dri": {"johnson_px": {"R": 6.0}}})
    assert pol.ceiling(6.5) == "R" and pol.ceiling(5.0) == "D"


def test_level_never_above_ceiling_exhaustive() -> None:
    order = {"D": 0, "R": 1, "I": 2}
    for leaf in range(len(DEFAULT_CLASSES)):
        for px in [0.5, 2, 3.6, 7.9, 8, 12, 13, 40]:
            for s in (0.3, 0.6, 0.99):
                sc = [0.0] * len(DEFAULT_CLASSES)
                sc[leaf] = s
                g = grade(H, P, sc, leaf, px)
                if g.dri_level is not None:
                    assert order[g.dri_level] <= order[g.ceiling]
