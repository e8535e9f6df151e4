"""The pack over MAVLink (pymavlink), on loopback UDP only.

- `MavlinkBridge`: simulated robots appear as MAVLink vehicles to a ground station (QGroundControl,
  MAVProxy, or pymavlink): HEARTBEAT, GLOBAL_POSITION_INT and SYS_STATUS at `rate_hz` (wall clock,
  spread over the steps so no step pays for all of them), and the mission protocol: a ground station
  that asks (MISSION_REQUEST_LIST) gets the robot's allocated tasks as MISSION_ITEM_INT waypoints,
  and the no-go zones as a fence; a ground station that uploads a mission (MISSION_COUNT, then the
  items the vehicle asks for) has the robot fly it, out of the pack's allocation meanwhile.
- `AutopilotLink`: the other way, a robot's allocated tasks uploaded to an autopilot as a MAVLink
  mission (MISSION_COUNT / MISSION_REQUEST_INT / MISSION_ITEM_INT / MISSION_ACK), the no-go zones
  as fence items (MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION), and the positions the autopilot
  reports (GLOBAL_POSITION_INT) fed back into the simulation, where the planner reads them.
- `MiniAutopilot`: the autopilot end of the mission protocol, for tests and demonstrations (no
  autopilot binary, PX4 or ArduPilot SITL, is available on this machine).

MAVLink's system id is one byte (1..255, 255 by custom for ground stations), so one network carries at
most 254 vehicles. More robots are spread over several links, each its own UDP socket and system ids
1..254: robot k is link k // 254, system id k % 254 + 1 (a ground station connects to each link, or a
router such as mavlink-router merges them per id range).
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

os.environ.setdefault("MAVLINK20", "1")  # mission_type and the _INT messages need MAVLink 2
from pymavlink.dialects.v20 import common as mav  # noqa: E402

from casemate.errors import UsageError  # noqa: E402
from casemate.pack.world import DOMAINS  # noqa: E402

if TYPE_CHECKING:
    from casemate.pack.sim import Simulation

PER_LINK = 254  # system ids 1..254 per network; 255 is the ground station's by custom
EARTH_R = 6371000.0
DEFAULT_ORIGIN = (0.0, 0.0)  # lon, lat of a local scenario's (0, 0) when the caller gives none
_VEHICLE_TYPE = {"air": mav.MAV_TYPE_QUADROTOR, "ground": mav.MAV_TYPE_GROUND_ROVER, "surface": mav.MAV_TYPE_SURFACE_BOAT}


def _loopback(host: str) -> str:
    """The address, refused unless it is loopback (the platform never talks to anything else)."""
    addr = "127.0.0.1" if host == "localhost" else host
    try:
        ok = ipaddress.ip_address(addr).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"MAVLink address {host!r}: only loopback (127.0.0.1) is allowed; reach a radio or a "
                         "vehicle through a local router (e.g. mavlink-router) listening on loopback")
    return addr


class Geo:
    """Local metres <-> WGS84 for a scenario: its own projection for lon/lat areas, else equirectangular
    around `origin` (lon, lat) for local ones."""

    def __init__(self, sim: Simulation, origin: tuple[float, float] | None = None) -> None:
        sc = sim.sc
        self.origin = sc.lonlat_origin or origin or DEFAULT_ORIGIN
        self.k = math.cos(math.radians(self.origin[1]))

    def lonlat(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        lon = self.origin[0] + np.degrees(xy[:, 0] / (EARTH_R * self.k))
        lat = self.origin[1] + np.degrees(xy[:, 1] / EARTH_R)
        return np.column_stack([lon, lat])

    def local(self, lonlat: np.ndarray) -> np.ndarray:
        ll = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([np.radians(ll[:, 0] - self.origin[0]) * EARTH_R * self.k,
                                np.radians(ll[:, 1] - self.origin[1]) * EARTH_R])


@dataclass
class Item:
    """A mission or fence item, in MISSION_ITEM_INT terms."""

    command: int
    lat: float
    lon: float
    alt: float = 0.0
    params: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    frame: int = mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT

    def message(self, target: tuple[int, int], seq: int, mission_type: int) -> Any:
        return mav.MAVLink_mission_item_int_message(target[0], target[1], seq, self.frame, self.command, 0, 1,
                                                    *self.params, int(round(self.lat * 1e7)), int(round(self.lon * 1e7)),
                                                    float(self.alt), mission_type)


def task_items(sim: Simulation, robot: int, geo: Geo) -> list[Item]:
    """What the robot flies, in order, as waypoints at its altitude: its allocated tasks, or the mission a
    ground station uploaded to it."""
    alt = float(sim.fleet.types[int(sim.fleet.type_id[robot])].altitude)
    flight = sim.flights.get(int(robot))
    if flight is not None:
        ll = geo.lonlat(flight.points)
        return [Item(mav.MAV_CMD_NAV_WAYPOINT, float(lat), float(lon), alt, (0.0, float(a), 0.0, 0.0))
                for (lon, lat), a in zip(ll, flight.accept, strict=True)]
    view = sim._view
    path = view.path[robot]
    path = path[path >= 0]
    if len(path) == 0:
        return []
    goals = sim.task_goal[robot, path]
    ll = geo.lonlat(goals)
    return [Item(mav.MAV_CMD_NAV_WAYPOINT, float(lat), float(lon), alt) for lon, lat in ll]


def fence_items(sim: Simulation, geo: Geo) -> list[Item]:
    """The no-go zones as exclusion polygons (param1: the polygon's vertex count)."""
    items = []
    for poly in sim.sc.nogo_polygons:  # local metres, whether they came from the file or a GeoJSON
        ll = geo.lonlat(poly)
        for lon, lat in ll:
            items.append(Item(mav.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION, float(lat), float(lon), 0.0,
                              (float(len(ll)), 0.0, 0.0, 0.0), mav.MAV_FRAME_GLOBAL_INT))
    return items


try:
    from fastcrc.crc16 import mcrf4xx as _mcrf4xx
except ImportError:  # pragma: no cover - pymavlink installs it; the NumPy loop below does the same
    _mcrf4xx = None

_NP = {"I": "<u4", "i": "<i4", "H": "<u2", "h": "<i2", "B": "u1", "b": "i1", "f": "<f4", "Q": "<u8", "q": "<i8",
       "d": "<f8"}


def _wire_dtype(cls: Any) -> np.dtype:
    """The message's payload as a NumPy record, fields in wire order (scalar fields only)."""
    fmt = cls.unpacker.format.lstrip("<")
    if any(cls.array_lengths) or len(fmt) != len(cls.ordered_fieldnames):
        raise ValueError(f"{cls.msgname}: array fields are not supported by the batch encoder")
    return np.dtype([(name, _NP[c]) for name, c in zip(cls.ordered_fieldnames, fmt, strict=True)])


def encode_batch(cls: Any, sysid: np.ndarray, compid: int, seq: np.ndarray, fields: dict[str, Any]) -> np.ndarray:
    """MAVLink 2 frames of one message type for many vehicles at once: (K,) system ids and sequence
    numbers, field values as scalars or (K,) arrays; the frames concatenated, row after row (bytes for
    bytes what pymavlink's pack() writes, trailing zero bytes of each payload truncated as MAVLink 2
    requires, X.25 CRC with the message's CRC_EXTRA). One vectorised pass instead of K Python packs:
    the bridge then holds the interpreter for microseconds, not milliseconds, beside the simulation's
    worker thread."""
    k = len(sysid)
    rec = np.zeros(k, dtype=_wire_dtype(cls))
    for name, value in fields.items():
        rec[name] = value
    payload = rec.view(np.uint8).reshape(k, -1)
    width = payload.shape[1]
    nz = payload != 0
    plen = np.where(nz.any(axis=1), width - np.argmax(nz[:, ::-1], axis=1), 1)  # at least one byte
    frame = np.zeros((k, 12 + width), dtype=np.uint8)
    frame[:, 0] = 0xFD
    frame[:, 1] = plen
    frame[:, 4] = seq
    frame[:, 5] = sysid
    frame[:, 6] = compid
    frame[:, 7], frame[:, 8], frame[:, 9] = cls.id & 0xFF, (cls.id >> 8) & 0xFF, (cls.id >> 16) & 0xFF
    frame[:, 10:10 + width] = payload
    end = 10 + plen  # CRC over bytes 1 .. end-1, then CRC_EXTRA
    if _mcrf4xx is not None:  # fastcrc (a pymavlink dependency): a microsecond a frame
        buf, w, extra = frame.tobytes(), 12 + width, bytes([cls.crc_extra])
        crc = np.array([_mcrf4xx(buf[r * w + 1:r * w + e] + extra, 0xFFFF) for r, e in enumerate(end.tolist())],
                       dtype=np.uint32)
    else:
        crc = np.full(k, 0xFFFF, dtype=np.uint32)
        for c in range(1, 10 + width):
            crc = np.where(c < end, _crc_step(crc, frame[:, c].astype(np.uint32)), crc)
        crc = _crc_step(crc, np.uint32(cls.crc_extra))
    rows = np.arange(k)
    frame[rows, end] = crc & 0xFF
    frame[rows, end + 1] = crc >> 8
    keep = np.arange(12 + width)[None, :] < (end + 2)[:, None]
    return frame[keep]


_HEADER = [("stx", "u1"), ("len", "u1"), ("incompat", "u1"), ("compat", "u1"), ("seq", "u1"), ("sysid", "u1"),
           ("compid", "u1"), ("msgid", "u1", (3,))]


class TelemetryRecords:
    """Several MAVLink 2 messages per vehicle as ONE NumPy record per vehicle: each message a whole frame
    (header, untruncated payload, CRC) at a fixed offset, so a batch is one array filled field by field
    and sent as its bytes. MAVLink 2 allows untruncated payloads (a receiver zero-fills a truncated one,
    and takes a full one as it is); the constant fields are written once, in a template. Against
    `encode_batch` per message type: no per-frame truncation, no frame assembly, no concatenation, a
    third of the NumPy calls (docs/benchmarks.md)."""

    def __init__(self, classes: dict[str, Any], constant: dict[str, dict[str, Any]], compid: int = 1) -> None:
        self.classes = classes
        self.dtype = np.dtype([(key, [*_HEADER, ("payload", _wire_dtype(cls)), ("crc", "<u2")])
                               for key, cls in classes.items()])
        self.template = np.zeros(1, dtype=self.dtype)
        for key, cls in classes.items():
            fr = self.template[key]
            width = _wire_dtype(cls).itemsize
            fr["stx"], fr["len"], fr["compid"] = 0xFD, width, compid
            fr["msgid"] = [cls.id & 0xFF, (cls.id >> 8) & 0xFF, (cls.id >> 16) & 0xFF]
            for name, value in constant.get(key, {}).items():
                fr["payload"][name] = value
        # where each frame's CRC input starts and ends in a record, and its CRC_EXTRA
        self._spans = [(self.dtype.fields[key][1] + 1, self.dtype.fields[key][1] + 10 + _wire_dtype(cls).itemsize,
                        bytes([cls.crc_extra]), key) for key, cls in classes.items()]

    def encode(self, sysid: np.ndarray, seq: np.ndarray, fields: dict[str, dict[str, Any]]) -> bytes:
        """Frames for K vehicles: (K,) system ids, the first message's (K,) sequence numbers (the next
        messages follow on), field values per message as scalars or (K,) arrays."""
        k = len(sysid)
        rec = np.repeat(self.template, k)
        for n, key in enumerate(self.classes):
            fr = rec[key]
            fr["sysid"] = sysid
            fr["seq"] = (seq + n) % 256
            pay = fr["payload"]
            for name, value in fields.get(key, {}).items():
                pay[name] = value
        buf = rec.tobytes()
        size = self.dtype.itemsize
        for a, b, extra, key in self._spans:
            if _mcrf4xx is not None:
                rec[key]["crc"] = [_mcrf4xx(buf[r * size + a:r * size + b] + extra, 0xFFFF) for r in range(k)]
            else:  # pragma: no cover - fastcrc comes with pymavlink
                raw = np.frombuffer(buf, dtype=np.uint8).reshape(k, size)
                crc = np.full(k, 0xFFFF, dtype=np.uint32)
                for c in range(a, b):
                    crc = _crc_step(crc, raw[:, c].astype(np.uint32))
                rec[key]["crc"] = _crc_step(crc, np.uint32(extra[0]))
        return rec.tobytes()


def _crc_step(crc: np.ndarray, byte: Any) -> np.ndarray:
    tmp = (byte ^ (crc & 0xFF)) & 0xFF
    tmp = (tmp ^ (tmp << 4)) & 0xFF
    return ((crc >> 8) ^ (tmp << 8) ^ (tmp << 3) ^ (tmp >> 4)) & 0xFFFF


class _Endpoint:
    """One UDP socket on loopback and a MAVLink parser for what arrives."""

    def __init__(self, bind: tuple[str, int], peer: tuple[str, int] | None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((_loopback(bind[0]), bind[1]))
        self.sock.setblocking(False)
        self.peer = None if peer is None else (_loopback(peer[0]), peer[1])
        self.parser = mav.MAVLink(None, srcSystem=0, srcComponent=0)
        self.parser.robust_parsing = True

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def send_many(self, buf: bytes, chunk: int = 8192) -> int:
        """Frames in datagrams of at most `chunk` bytes, cut between frames (MAVLink over UDP allows
        several frames a datagram): a few system calls a tick instead of one per vehicle."""
        if len(buf) <= chunk:
            self.send(buf)
            return 1
        view, n, pos = memoryview(buf), 0, 0
        while pos < len(buf):
            end = min(len(buf), pos + chunk)
            if end < len(buf):
                cut = pos
                while cut < end:  # walk frames: STX, payload length, 10 header/CRC bytes
                    step = 12 + buf[cut + 1]
                    if cut + step > end:
                        break
                    cut += step
                end = cut if cut > pos else end
            self.send(bytes(view[pos:end]))
            pos, n = end, n + 1
        return n

    def send(self, buf: bytes) -> None:
        if self.peer is not None:
            try:
                self.sock.sendto(buf, self.peer)
            except (BlockingIOError, ConnectionRefusedError):
                pass  # nobody listening yet, or the buffer is full: telemetry is best effort, like a radio

    def receive(self) -> list[Any]:
        out = []
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, ConnectionRefusedError):
                return out
            if self.peer is None:
                self.peer = addr  # answer whoever spoke first (a ground station's udpout, an autopilot)
            msgs = self.parser.parse_buffer(data) or []
            out.extend(m for m in msgs if m.get_type() != "BAD_DATA")

    def close(self) -> None:
        self.sock.close()


class _Encoder:
    """A vehicle's own MAVLink sender: its system id and sequence numbers."""

    def __init__(self, sysid: int, compid: int = 1) -> None:
        self.mav = mav.MAVLink(None, srcSystem=sysid, srcComponent=compid)

    def pack(self, msg: Any) -> bytes:
        buf = msg.pack(self.mav)
        self.mav.seq = (self.mav.seq + 1) % 256
        return buf


@dataclass
class _Download:
    """A ground station reading a vehicle's mission or fence (the vehicle's side of the protocol)."""

    items: list[Item]
    mission_type: int


@dataclass
class _Upload:
    """A ground station writing a mission to a vehicle (the vehicle's side: it asks for each item)."""

    count: int
    mission_type: int
    src: tuple[int, int]
    items: list[Any] = field(default_factory=list)


# mission commands a simulated vehicle flies as "go there" (a take-off, a loiter or a landing point is a
# waypoint to it); anything else (DO_*, conditions) is refused rather than silently ignored
_NAV_POINTS = {mav.MAV_CMD_NAV_WAYPOINT, mav.MAV_CMD_NAV_LOITER_UNLIM, mav.MAV_CMD_NAV_LOITER_TURNS,
               mav.MAV_CMD_NAV_LOITER_TIME, mav.MAV_CMD_NAV_TAKEOFF, mav.MAV_CMD_NAV_LAND}
_GLOBAL_FRAMES = {mav.MAV_FRAME_GLOBAL, mav.MAV_FRAME_GLOBAL_RELATIVE_ALT, mav.MAV_FRAME_GLOBAL_INT,
                  mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT, mav.MAV_FRAME_GLOBAL_TERRAIN_ALT,
                  mav.MAV_FRAME_GLOBAL_TERRAIN_ALT_INT}


@dataclass
class BridgeStats:
    sent: int = 0
    received: int = 0
    missions_served: int = 0
    missions_accepted: int = 0  # uploaded by a ground station, being flown
    wall_s: float = 0.0
    ticks: int = 0
    errors: list[str] = field(default_factory=list)


class MavlinkBridge:
    """Robots of a simulation as MAVLink vehicles on loopback UDP (see the module's docstring).

    Call `tick()` after each `sim.step()`.
    """

    def __init__(self, sim: Simulation, robots: Sequence[int] | None = None, *, gcs: tuple[str, int] = ("127.0.0.1", 14550),
                 rate_hz: float = 1.0, origin: tuple[float, float] | None = None, bind_host: str = "127.0.0.1",
                 clock: Callable[[], float] = time.monotonic, batch_s: float = 0.1, encoder: str = "records") -> None:
        if rate_hz <= 0:
            raise UsageError(f"MAVLink rate_hz must be positive, got {rate_hz}")
        if encoder not in ("records", "batch"):
            raise UsageError(f"MAVLink encoder must be 'records' or 'batch', got {encoder!r}")
        self.encoder = encoder  # "batch": encode_batch per message type (the earlier encoder, for comparison)
        self._records = TelemetryRecords(
            {"hb": mav.MAVLink_heartbeat_message, "pos": mav.MAVLink_global_position_int_message,
             "st": mav.MAVLink_sys_status_message},
            {"hb": {"autopilot": mav.MAV_AUTOPILOT_GENERIC,
                    "base_mode": mav.MAV_MODE_FLAG_AUTO_ENABLED | mav.MAV_MODE_FLAG_SAFETY_ARMED, "mavlink_version": 3},
             "st": {"voltage_battery": 12000, "current_battery": -1}})
        self.sim = sim
        n = len(sim.fleet)
        self.robots = np.arange(n) if robots is None else np.asarray(robots, dtype=np.int64)
        if len(self.robots) and (self.robots.min() < 0 or self.robots.max() >= n):
            raise UsageError(f"MAVLink robots: numbers run from 0 to {n - 1}")
        self.geo = Geo(sim, origin)
        self.period = 1.0 / rate_hz
        # telemetry goes out at most every batch_s (the vehicles due by then, together): a tick's fixed
        # cost is paid 10 times a second, not at every step; reports are at most batch_s late
        self.batch_s = min(batch_s, self.period / 2)
        self._last_batch = -math.inf
        self.clock = clock
        self.stats = BridgeStats()
        # robot i of the exposed list: link i // 254, system id i % 254 + 1
        k = np.arange(len(self.robots))
        self.link_of, self.sysid_of = k // PER_LINK, k % PER_LINK + 1
        self.links = [_Endpoint((bind_host, 0), gcs) for _ in range(int(math.ceil(len(self.robots) / PER_LINK)))]
        self.enc = [_Encoder(int(s)) for s in self.sysid_of]  # for replies (the mission protocol)
        self.seq = np.zeros(len(self.robots), dtype=np.int64)  # telemetry's sequence numbers, per vehicle
        self._index = {(int(lk), int(s)): i for i, (lk, s) in enumerate(zip(self.link_of, self.sysid_of, strict=True))}
        now = clock()
        # staggered first reports: the same number of vehicles due in every part of a period
        self.next_due = now + self.period * (k / max(len(k), 1))
        self._downloads: dict[tuple[int, int], _Download] = {}
        self._uploads: dict[tuple[int, int], _Upload] = {}
        self._boot = now
        self._vtype = np.array([_VEHICLE_TYPE[DOMAINS[int(d)]] for d in sim.fleet.domain[self.robots]], dtype=np.int64)

    def resume(self) -> None:
        """After a pause (the simulation held, the link down), spread the reports over a period again
        rather than send every overdue one at once."""
        now = self.clock()
        k = np.arange(len(self.robots))
        self.next_due = now + self.period * (k / max(len(k), 1))

    def address(self, robot: int) -> tuple[tuple[str, int], int]:
        """(UDP address of its link, system id) of an exposed robot."""
        i = int(np.flatnonzero(self.robots == robot)[0])
        return self.links[int(self.link_of[i])].address, int(self.sysid_of[i])

    def tick(self) -> int:
        """Send the telemetry now due, answer the ground station; returns the messages sent."""
        t0 = time.perf_counter()
        now = self.clock()
        sent = self._telemetry(now)
        for li, link in enumerate(self.links):
            for msg in link.receive():
                self.stats.received += 1
                sent += self._handle(li, link, msg)
        self.stats.sent += sent
        self.stats.ticks += 1
        self.stats.wall_s += time.perf_counter() - t0
        return sent

    def _telemetry(self, now: float) -> int:
        if now - self._last_batch < self.batch_s:
            return 0
        self._last_batch = now
        due = np.flatnonzero(self.next_due <= now)
        if len(due) == 0:
            return 0
        self.next_due[due] += self.period * np.maximum(1, np.ceil((now - self.next_due[due]) / self.period))
        f = self.sim.fleet
        rows = self.robots[due]
        ll = self.geo.lonlat(f.pos[rows])
        lat, lon = np.round(ll[:, 1] * 1e7).astype(np.int64), np.round(ll[:, 0] * 1e7).astype(np.int64)
        alt_mm = np.round(f.param("altitude")[rows] * 1000).astype(np.int64)
        vx, vy = np.round(f.vel[rows, 1] * 100).astype(np.int64), np.round(f.vel[rows, 0] * 100).astype(np.int64)  # N, E
        hdg = (np.round(np.degrees(np.pi / 2 - f.heading[rows]) * 100).astype(np.int64)) % 36000
        alive = f.alive[rows]
        left = np.clip(f.energy[rows] / np.maximum(f.param("endurance")[rows], 1e-9) * 100, 0, 100).astype(np.int64)
        boot_ms = int((now - self._boot) * 1000) & 0xFFFFFFFF
        mode = mav.MAV_MODE_FLAG_AUTO_ENABLED | mav.MAV_MODE_FLAG_SAFETY_ARMED
        state = np.where(alive, mav.MAV_STATE_ACTIVE, mav.MAV_STATE_FLIGHT_TERMINATION)
        n = 0
        for li in np.unique(self.link_of[due]):
            sel = due[self.link_of[due] == li]
            j = np.searchsorted(due, sel) if len(self.links) > 1 else slice(None)
            sid, seq = self.sysid_of[sel], self.seq[sel]
            if self.encoder == "records":
                buf = self._records.encode(sid, seq, {
                    "hb": {"type": self._vtype[sel], "system_status": state[j]},
                    "pos": {"time_boot_ms": boot_ms, "lat": lat[j], "lon": lon[j], "alt": alt_mm[j],
                            "relative_alt": alt_mm[j], "vx": vx[j], "vy": vy[j], "hdg": hdg[j]},
                    "st": {"battery_remaining": left[j]}})
                self.seq[sel] = (seq + 3) % 256
                self.links[int(li)].send_many(buf)
                n += 3 * len(sel)
                continue
            hb = encode_batch(mav.MAVLink_heartbeat_message, sid, 1, seq % 256,
                              {"type": self._vtype[sel], "autopilot": mav.MAV_AUTOPILOT_GENERIC, "base_mode": mode,
                               "custom_mode": 0, "system_status": state[j], "mavlink_version": 3})
            pos = encode_batch(mav.MAVLink_global_position_int_message, sid, 1, (seq + 1) % 256,
                               {"time_boot_ms": boot_ms, "lat": lat[j], "lon": lon[j], "alt": alt_mm[j],
                                "relative_alt": alt_mm[j], "vx": vx[j], "vy": vy[j], "vz": 0, "hdg": hdg[j]})
            st = encode_batch(mav.MAVLink_sys_status_message, sid, 1, (seq + 2) % 256,
                              {"voltage_battery": 12000, "current_battery": -1, "battery_remaining": left[j]})
            self.seq[sel] = (seq + 3) % 256
            self.links[int(li)].send_many(np.concatenate([hb, pos, st]).tobytes())
            n += 3 * len(sel)
        return n

    def _handle(self, li: int, link: _Endpoint, msg: Any) -> int:
        kind = msg.get_type()
        target = getattr(msg, "target_system", None)
        i = self._index.get((li, int(target))) if target is not None else None
        if i is None:
            return 0  # a broadcast or another link's vehicle
        enc, robot, src = self.enc[i], int(self.robots[i]), (msg.get_srcSystem(), msg.get_srcComponent())
        enc.mav.seq = int(self.seq[i])  # one sequence per vehicle, telemetry and replies alike
        try:
            return self._reply(li, link, msg, kind, int(target), enc, robot, src)
        finally:
            self.seq[i] = enc.mav.seq

    def _reply(self, li: int, link: _Endpoint, msg: Any, kind: str, target: int, enc: _Encoder, robot: int,
               src: tuple[int, int]) -> int:
        mtype = getattr(msg, "mission_type", mav.MAV_MISSION_TYPE_MISSION)
        if kind == "MISSION_REQUEST_LIST":
            items = task_items(self.sim, robot, self.geo) if mtype == mav.MAV_MISSION_TYPE_MISSION else (
                fence_items(self.sim, self.geo) if mtype == mav.MAV_MISSION_TYPE_FENCE else [])
            self._downloads[(li, int(target))] = _Download(items, mtype)
            link.send(enc.pack(mav.MAVLink_mission_count_message(src[0], src[1], len(items), mtype)))
            return 1
        if kind in ("MISSION_REQUEST_INT", "MISSION_REQUEST"):
            dl = self._downloads.get((li, int(target)))
            if dl is None or msg.seq >= len(dl.items):
                link.send(enc.pack(mav.MAVLink_mission_ack_message(src[0], src[1], mav.MAV_MISSION_INVALID_SEQUENCE, mtype)))
                return 1
            link.send(enc.pack(dl.items[msg.seq].message(src, msg.seq, dl.mission_type)))
            return 1
        if kind == "MISSION_ACK":
            if self._downloads.pop((li, int(target)), None) is not None:
                self.stats.missions_served += 1
            return 0
        if kind == "MISSION_COUNT":
            if mtype != mav.MAV_MISSION_TYPE_MISSION:  # the fence is the scenario's no-go zones
                return self._ack(link, enc, src, mav.MAV_MISSION_UNSUPPORTED, mtype)
            if msg.count == 0:  # an empty mission: back to the pack's allocation
                self._uploads.pop((li, target), None)
                self.sim.fly_mission(robot, np.zeros((0, 2)))
                return self._ack(link, enc, src, mav.MAV_MISSION_ACCEPTED, mtype)
            self._uploads[(li, target)] = _Upload(int(msg.count), mtype, src)
            link.send(enc.pack(mav.MAVLink_mission_request_int_message(src[0], src[1], 0, mtype)))
            return 1
        if kind in ("MISSION_ITEM_INT", "MISSION_ITEM"):
            up = self._uploads.get((li, target))
            if up is None or mtype != up.mission_type:
                return 0  # not uploading: a stray item
            if msg.seq == len(up.items):
                up.items.append(msg)
            elif msg.seq > len(up.items):
                return self._ack(link, enc, src, mav.MAV_MISSION_INVALID_SEQUENCE, mtype, (li, target))
            if len(up.items) < up.count:
                link.send(enc.pack(mav.MAVLink_mission_request_int_message(src[0], src[1], len(up.items), mtype)))
                return 1
            return self._accept(link, enc, src, robot, (li, target), up)
        return 0

    def _ack(self, link: _Endpoint, enc: _Encoder, src: tuple[int, int], result: int, mtype: int,
             upload: tuple[int, int] | None = None) -> int:
        if upload is not None:
            self._uploads.pop(upload, None)
        link.send(enc.pack(mav.MAVLink_mission_ack_message(src[0], src[1], result, mtype)))
        return 1

    def _accept(self, link: _Endpoint, enc: _Encoder, src: tuple[int, int], robot: int, key: tuple[int, int],
                up: _Upload) -> int:
        """A complete upload: checked item by item, then flown by the robot (or refused as a whole)."""
        lonlat, accept = [], []
        for it in up.items:
            if it.command not in _NAV_POINTS:
                self.stats.errors.append(f"robot {robot}: mission item {it.seq}: command {it.command} not supported")
                return self._ack(link, enc, src, mav.MAV_MISSION_UNSUPPORTED, up.mission_type, key)
            if it.frame not in _GLOBAL_FRAMES:
                self.stats.errors.append(f"robot {robot}: mission item {it.seq}: frame {it.frame} not global")
                return self._ack(link, enc, src, mav.MAV_MISSION_UNSUPPORTED_FRAME, up.mission_type, key)
            scale = 1e-7 if it.get_type() == "MISSION_ITEM_INT" else 1.0
            lonlat.append((it.y * scale, it.x * scale))
            accept.append(it.param2 if it.command == mav.MAV_CMD_NAV_WAYPOINT else 0.0)
        try:
            self.sim.fly_mission(robot, self.geo.local(np.array(lonlat)), np.array(accept))
        except UsageError as exc:  # outside the area, in a no-go zone, or where its domain may not go
            self.stats.errors.append(f"robot {robot}: {exc.message}")
            return self._ack(link, enc, src, mav.MAV_MISSION_DENIED, up.mission_type, key)
        self.stats.missions_accepted += 1
        return self._ack(link, enc, src, mav.MAV_MISSION_ACCEPTED, up.mission_type, key)

    def close(self) -> None:
        for link in self.links:
            link.close()


# ------------------------------------------------------------------------------- towards an autopilot
class AutopilotLink:
    """The pack's side of a link to one autopilot flying robot `robot`: upload its allocated tasks (and the
    fence), and take the positions it reports back into the simulation."""

    def __init__(self, sim: Simulation, robot: int, autopilot: tuple[str, int], *, sysid: int = 255, compid: int = 190,
                 target: tuple[int, int] = (1, 1), origin: tuple[float, float] | None = None) -> None:
        self.sim, self.robot, self.target = sim, int(robot), target
        self.geo = Geo(sim, origin)
        self.ep = _Endpoint(("127.0.0.1", 0), autopilot)
        self.enc = _Encoder(sysid, compid)
        self.positions = 0

    def _send(self, msg: Any) -> None:
        self.ep.send(self.enc.pack(msg))

    def _wait(self, kinds: set[str], deadline: float) -> Any:
        while time.monotonic() < deadline:
            for msg in self.ep.receive():
                if msg.get_type() == "GLOBAL_POSITION_INT":
                    self._position(msg)
                if msg.get_type() in kinds:
                    return msg
            time.sleep(0.001)
        return None

    def upload(self, items: list[Item], mission_type: int = mav.MAV_MISSION_TYPE_MISSION, timeout: float = 5.0) -> int:
        """The mission protocol, uploader's side: MISSION_COUNT, then an item per request, until the ACK."""
        deadline = time.monotonic() + timeout
        self._send(mav.MAVLink_mission_count_message(*self.target, len(items), mission_type))
        while True:
            msg = self._wait({"MISSION_REQUEST_INT", "MISSION_REQUEST", "MISSION_ACK"}, deadline)
            if msg is None:
                raise UsageError(f"autopilot {self.ep.peer}: no answer to the mission upload within {timeout:g} s")
            if msg.get_type() == "MISSION_ACK":
                if msg.type != mav.MAV_MISSION_ACCEPTED:
                    raise UsageError(f"autopilot {self.ep.peer} refused the mission (MAV_MISSION_RESULT {msg.type})")
                return len(items)
            if not 0 <= msg.seq < len(items):
                raise UsageError(f"autopilot {self.ep.peer} asked for item {msg.seq} of {len(items)}")
            self._send(items[msg.seq].message(self.target, msg.seq, mission_type))

    def upload_tasks(self, timeout: float = 5.0) -> tuple[int, int]:
        """The robot's allocated tasks as a mission and the no-go zones as a fence: (items, fence items)."""
        n = self.upload(task_items(self.sim, self.robot, self.geo), mav.MAV_MISSION_TYPE_MISSION, timeout)
        fence = fence_items(self.sim, self.geo)
        k = self.upload(fence, mav.MAV_MISSION_TYPE_FENCE, timeout) if fence else 0
        return n, k

    def _position(self, msg: Any) -> None:
        xy = self.geo.local(np.array([[msg.lon / 1e7, msg.lat / 1e7]]))[0]
        self.sim.fleet.pos[self.robot] = xy  # the planner plans from where the vehicle really is
        self.positions += 1

    def poll(self) -> int:
        """Take the positions reported since the last poll; returns how many."""
        before = self.positions
        for msg in self.ep.receive():
            if msg.get_type() == "GLOBAL_POSITION_INT":
                self._position(msg)
        return self.positions - before

    def close(self) -> None:
        self.ep.close()


class MiniAutopilot:
    """The autopilot's side of the mission protocol and its position reports: enough for a test or a
    demonstration of AutopilotLink on loopback (not a flight controller)."""

    def __init__(self, sysid: int = 1, compid: int = 1, bind: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.ep = _Endpoint(bind, None)
        self.enc = _Encoder(sysid, compid)
        self.missions: dict[int, list[Any]] = {}  # mission_type -> items received
        self._incoming: dict[int, tuple[int, list[Any]]] = {}

    @property
    def address(self) -> tuple[str, int]:
        return self.ep.address

    def serve(self) -> None:
        """Handle what arrived: mission counts (ask for each item), items (ask for the next, ACK the last)."""
        for msg in self.ep.receive():
            src = (msg.get_srcSystem(), msg.get_srcComponent())
            kind = msg.get_type()
            if kind == "MISSION_COUNT":
                self._incoming[msg.mission_type] = (msg.count, [])
                if msg.count == 0:
                    self._accept(src, msg.mission_type)
                else:
                    self.ep.send(self.enc.pack(mav.MAVLink_mission_request_int_message(*src, 0, msg.mission_type)))
            elif kind == "MISSION_ITEM_INT" and msg.mission_type in self._incoming:
                count, items = self._incoming[msg.mission_type]
                if msg.seq == len(items):
                    items.append(msg)
                if len(items) == count:
                    self._accept(src, msg.mission_type)
                else:
                    self.ep.send(self.enc.pack(mav.MAVLink_mission_request_int_message(*src, len(items), msg.mission_type)))

    def _accept(self, src: tuple[int, int], mission_type: int) -> None:
        self.missions[mission_type] = self._incoming.pop(mission_type)[1]
        self.ep.send(self.enc.pack(mav.MAVLink_mission_ack_message(*src, mav.MAV_MISSION_ACCEPTED, mission_type)))

    def report(self, lon: float, lat: float, alt_m: float = 50.0) -> None:
        self.ep.send(self.enc.pack(mav.MAVLink_global_position_int_message(0, int(round(lat * 1e7)), int(round(lon * 1e7)),
                                                                          int(alt_m * 1000), int(alt_m * 1000), 0, 0, 0, 0)))

    def close(self) -> None:
        self.ep.close()
