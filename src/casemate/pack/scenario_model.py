"""The shape of a scenario file as a pydantic model: every key, its type and its allowed values.

`parse_scenario` validates a file against it once, first; an error names the key (`robots[1].role`)
and what it may be. What needs the geometry (inside the area, a known robot type, reachable) is
checked after, while the world is built.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casemate.errors import UsageError

Level = Literal["D", "R", "I"]
Number = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Point = Annotated[list[Number], Field(min_length=2, max_length=2)]
Polygon = Annotated[list[Point], Field(min_length=3)]


class _Spec(BaseModel):
    # strict: a string is not a number, 1 is not true; unknown keys are errors
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class AreaSpec(_Spec):
    crs: Literal["local", "lonlat"] = "local"
    polygon: Polygon


class TerrainSpec(_Spec):
    cell: Positive | None = None
    default: Literal["land", "water"] = "land"
    land: list[Polygon] | None = None
    water: list[Polygon] | None = None
    obstacles: list[Polygon] | None = None


class RobotTypeSpec(_Spec):
    base: str | None = None
    domain: Literal["air", "ground", "surface"] | None = None
    max_speed: Number | None = None
    max_accel: Number | None = None
    turn_rate: Number | None = None
    endurance: Number | None = None
    sensor_range: Number | None = None
    ifov: Number | None = None
    p_detect: Number | None = None
    radio_range: Number | None = None
    radius: Number | None = None
    altitude: Number | None = None


class RobotGroupSpec(_Spec):
    type: str
    count: Annotated[int, Field(ge=1)] = 1
    start: Point
    spread: NonNegative = 0.0
    role: Literal["auto", "search", "surveil", "tasks"] = "auto"


class TargetSpec(_Spec):
    position: Point | None = None
    velocity: Point | None = None
    size: Positive | None = None
    level: Level | None = None
    value: Positive | None = None
    visit: bool = True
    geojson: str | None = None  # a file of points or polygons (e.g. the imagery's detections)
    id: str | None = None  # a name the operator uses (approve MISSION TASK)
    class_: str | None = Field(default=None, alias="class")  # what the imagery thought it was
    detection: dict[str, Any] | None = None  # where it came from: {version, feature, level, gsd_m, ...}


class CommsSpec(_Spec):
    model: Literal["bernoulli", "gilbert_elliott"] = "bernoulli"
    loss: Probability | None = None
    p_good_to_bad: Probability | None = None
    p_bad_to_good: Probability | None = None
    loss_good: Probability | None = None
    loss_bad: Probability | None = None
    latency: NonNegative | None = None
    period: NonNegative | None = None
    max_neighbours: Annotated[int, Field(ge=1)] | None = None


class LossSpec(_Spec):
    time: NonNegative
    robots: list[Annotated[int, Field(ge=0)]] | None = None
    fraction: Probability = 0.0


class CutSpec(_Spec):
    start: NonNegative
    end: NonNegative
    x: Number | None = None
    y: Number | None = None
    robots: list[int] | None = None


class NewTaskSpec(_Spec):
    time: NonNegative
    position: Point
    level: Level = "D"
    value: Positive = 1.0
    size: Positive = 5.0


class FailuresSpec(_Spec):
    lose: list[LossSpec] | None = None
    random_rate: NonNegative = 0.0
    cuts: list[CutSpec] | None = None
    new_tasks: list[NewTaskSpec] | None = None


class ObjectivesSpec(_Spec):
    search: bool = True
    visit: bool = True
    surveillance: bool = False


class AvoidanceSpec(_Spec):
    horizon: NonNegative | None = None
    neighbours: Annotated[int, Field(ge=0)] | None = None
    margin: NonNegative | None = None


class AllocationSpec(_Spec):
    bundle_size: Annotated[int, Field(ge=1)] = 3


class ApprovalRule(_Spec):
    """Tasks that need an officer's approval before any robot acts on them: a task matches when every
    criterion given matches (class, inside zone, wanted level at least `level`)."""

    class_: list[str] | str | None = Field(default=None, alias="class")
    zone: Polygon | None = None  # in the area's coordinates
    level: Level | None = None
    action: Literal["visit"] = "visit"
    timeout: Positive | None = None  # simulated seconds a task waits for a decision
    on_timeout: Literal["drop", "wait"] = "wait"


class ZoneFile(_Spec):
    """Polygons from a GeoJSON file (e.g. a land mask or no-go zones drawn in a GIS), used as one kind of zone."""

    geojson: str
    as_: Literal["land", "water", "obstacles", "no_go"] = Field(alias="as")


class ScenarioFile(_Spec):
    name: str | None = None
    label: str = "NP"
    description: str = ""
    area: AreaSpec
    terrain: TerrainSpec | None = None
    no_go: list[Polygon] | None = None
    zones: list[ZoneFile] | None = None
    robot_types: dict[str, RobotTypeSpec] | None = None
    robots: Annotated[list[RobotGroupSpec], Field(min_length=1)]
    targets: list[TargetSpec] | None = None
    comms: CommsSpec | None = None
    failures: FailuresSpec | None = None
    objectives: ObjectivesSpec | None = None
    avoidance: AvoidanceSpec | None = None
    allocation: AllocationSpec | None = None
    approvals: list[ApprovalRule] | None = None
    duration: Positive = 600.0
    dt: Positive = 0.5


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part).rstrip("_")
    return out or "(top)"


def _known(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown one was found (walking the model along loc)."""
    cur: Any = model
    key_next = False  # the next part is a key of a mapping field (robot_types.NAME), not a field
    for part in loc[:-1]:
        if isinstance(part, int) or cur is None or key_next:
            key_next = False
            continue
        fld = cur.model_fields.get(part) or next((f for f in cur.model_fields.values() if f.alias == part), None)
        if fld is None:
            return []
        key_next = "dict[" in str(fld.annotation)
        cur = _model_in(fld.annotation)
    if cur is None:
        return []
    return sorted(f.alias or n for n, f in cur.model_fields.items())


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    meta = getattr(tp, "__origin__", None)
    return _model_in(meta) if meta is not None and meta is not tp else None


def _message(err: dict[str, Any]) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field (known: {})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}, got {got!r}"
    if kind == "greater_than" and float(ctx.get("gt", 1)) == 0:
        return f"must be positive, got {got!r}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {got!r}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')} (a probability is between 0 and 1), got {got!r}"
    if kind == "too_short" and ctx.get("min_length") == 3:
        return f"not a polygon: expected a list of at least 3 points [[x, y], ...], got {got!r}"
    if kind in ("too_short", "too_long") and ctx.get("min_length", ctx.get("max_length")) == 2:
        return f"expected a point [x, y], got {got!r}"
    if kind in ("float_type", "int_type", "finite_number", "int_from_float"):
        return f"expected a {'whole ' if kind.startswith('int') else ''}number, got {got!r}"
    if kind in ("bool_type",):
        return f"expected true or false, got {got!r}"
    if kind in ("list_type", "dict_type", "model_type", "string_type"):
        want = {"list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping", "string_type": "text"}[kind]
        return f"expected {want}, got {got!r}"
    return f"{err['msg']}, got {got!r}"


def validate_file(data: Any, source: str) -> ScenarioFile:
    """The scenario mapping checked against the model; UsageError names the first bad key."""
    if not data:
        raise UsageError(f"scenario {source}: (top): empty scenario: expected a mapping with area, robots, ...")
    try:
        return ScenarioFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = _message(err)
        if msg == "unknown field (known: {})":  # a template; never .format a message holding the input
            msg = msg.replace("{}", ", ".join(_known(ScenarioFile, loc)))
        raise UsageError(f"scenario {source}: {_where(loc)}: {msg}") from None
