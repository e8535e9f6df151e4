"""The MAVLink bridge on loopback UDP: a pymavlink ground station sees the pack, downloads a robot's
mission and fence; a robot's tasks upload to an autopilot whose positions feed back into the planner."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from casemate.errors import UsageError
from casemate.pack.scenario import parse_scenario
from casemate.pack.sim import Simulation

mavutil = pytest.importorskip("pymavlink.mavutil")
from casemate.pack import mavlink as mb  # noqa: E402

ORIGIN = (-4.49, 48.38)


def _scenario(n: int = 4) -> dict:
    return {
        "name": "mav",
        "area": {"polygon": [[0, 0], [1500, 0], [1500, 1000], [0, 1000]]},
        "terrain": {"cell": 25, "default": "land"},
        "no_go": [[[600, 600], [800, 600], [800, 800], [600, 800]]],
        "robots": [{"type": "quadcopter", "count": n, "start": [200, 200], "role": "tasks"}],
        "targets": [{"position": [1200, 300], "level": "R"}, {"position": [1000, 900], "level": "R"},
                    {"position": [300, 800], "level": "R"}],
        "objectives": {"search": False, "visit": True},
        "duration": 60,
    }


def _gcs():
    conn = mavutil.mavlink_connection("udpin:127.0.0.1:0", source_system=255, source_component=190)
    return conn, conn.port.getsockname()[1]


def _drain(conn, bridge, kinds, want, deadline_s=5.0):
    got = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and len(got) < want:
        bridge.tick()
        m = conn.recv_match(type=kinds, blocking=True, timeout=0.05)
        if m is not None:
            got.append(m)
    return got


def test_ground_station_sees_the_pack_and_downloads_a_mission() -> None:
    sim = Simulation(parse_scenario(_scenario(), "mav.yaml"), 1)
    for _ in range(30):
        sim.step()
    gcs, port = _gcs()
    bridge = mb.MavlinkBridge(sim, gcs=("127.0.0.1", port), rate_hz=1.0, origin=ORIGIN, clock=lambda: sim.t)
    try:
        for _ in range(4):  # 2 s of simulated time: every vehicle reports at least once
            sim.step()
            bridge.tick()
        msgs = _drain(gcs, bridge, ["HEARTBEAT", "GLOBAL_POSITION_INT", "SYS_STATUS"], 24)
        assert {m.get_srcSystem() for m in msgs if m.get_type() == "HEARTBEAT"} == {1, 2, 3, 4}
        pos = [m for m in msgs if m.get_type() == "GLOBAL_POSITION_INT"]
        assert {m.get_type() for m in msgs} == {"HEARTBEAT", "GLOBAL_POSITION_INT", "SYS_STATUS"}
        hb = next(m for m in msgs if m.get_type() == "HEARTBEAT")
        assert hb.type == mb.mav.MAV_TYPE_QUADROTOR
        p = pos[0]
        lonlat = mb.Geo(sim, ORIGIN).lonlat(sim.fleet.pos[p.get_srcSystem() - 1])[0]
        assert abs(p.lon / 1e7 - lonlat[0]) < 2e-4 and abs(p.lat / 1e7 - lonlat[1]) < 2e-4  # within a step's motion
        assert p.relative_alt == 50_000  # quadcopter altitude, mm
        # mission download from the robot that holds tasks
        robot = int(np.flatnonzero((sim._view.path >= 0).any(axis=1))[0])
        sysid = robot + 1
        want = mb.task_items(sim, robot, bridge.geo)
        for mtype, n_want in ((mb.mav.MAV_MISSION_TYPE_MISSION, len(want)), (mb.mav.MAV_MISSION_TYPE_FENCE, 4)):
            gcs.mav.mission_request_list_send(sysid, 1, mtype)
            count = _drain(gcs, bridge, ["MISSION_COUNT"], 1)[0]
            assert count.get_srcSystem() == sysid and count.count == n_want and n_want > 0
            items = []
            for seq in range(count.count):
                gcs.mav.mission_request_int_send(sysid, 1, seq, mtype)
                items += _drain(gcs, bridge, ["MISSION_ITEM_INT"], 1)
            gcs.mav.mission_ack_send(sysid, 1, mb.mav.MAV_MISSION_ACCEPTED, mtype)
            bridge.tick()
            assert [i.seq for i in items] == list(range(n_want))
            if mtype == mb.mav.MAV_MISSION_TYPE_MISSION:
                assert all(i.command == mb.mav.MAV_CMD_NAV_WAYPOINT for i in items)
                assert abs(items[0].x / 1e7 - want[0].lat) < 1e-6 and abs(items[0].y / 1e7 - want[0].lon) < 1e-6
            else:
                assert all(i.command == mb.mav.MAV_CMD_NAV_FENCE_POLYGON_VERTEX_EXCLUSION and i.param1 == 4 for i in items)
        assert bridge.stats.missions_served == 2
    finally:
        bridge.close()
        gcs.close()


def test_more_than_254_vehicles_use_several_links() -> None:
    sc = _scenario(300)
    sc["area"]["polygon"] = [[0, 0], [3000, 0], [3000, 3000], [0, 3000]]
    sc["robots"][0]["start"] = [1500, 1500]
    sim = Simulation(parse_scenario(sc, "mav.yaml"), 0)
    import socket

    gcs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gcs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # 300 datagrams at once, unread until after
    gcs.bind(("127.0.0.1", 0))
    gcs.settimeout(0.5)
    parser = mb.mav.MAVLink(None)
    bridge = mb.MavlinkBridge(sim, gcs=gcs.getsockname(), origin=ORIGIN, clock=lambda: sim.t)
    try:
        assert len(bridge.links) == 2
        (a0, s0), (a1, s1), (a2, s2) = bridge.address(0), bridge.address(253), bridge.address(254)
        assert (s0, s1, s2) == (1, 254, 1) and a0 == a1 != a2
        sim.step()
        sim.step()
        bridge.tick()
        sources = set()
        while len(sources) < 300:
            try:
                data, addr = gcs.recvfrom(65536)
            except TimeoutError:
                break
            for m in parser.parse_buffer(data) or []:
                if m.get_type() == "HEARTBEAT":
                    sources.add((addr, m.get_srcSystem()))
        assert len(sources) == 300  # (link, system id) tells every robot apart
    finally:
        bridge.close()
        gcs.close()
    with pytest.raises(UsageError, match="loopback"):
        mb.MavlinkBridge(sim, gcs=("10.0.0.1", 14550))


def test_tasks_upload_to_an_autopilot_and_positions_feed_back() -> None:
    sim = Simulation(parse_scenario(_scenario(2), "mav.yaml"), 1)
    for _ in range(30):
        sim.step()
    robot = int(np.flatnonzero((sim._view.path >= 0).any(axis=1))[0])
    ap = mb.MiniAutopilot(sysid=1)
    stop = threading.Event()

    def autopilot() -> None:
        while not stop.is_set():
            ap.serve()
            time.sleep(0.001)

    th = threading.Thread(target=autopilot, daemon=True)
    th.start()
    link = mb.AutopilotLink(sim, robot, ap.address, origin=ORIGIN)
    try:
        n, k = link.upload_tasks()
        want = mb.task_items(sim, robot, link.geo)
        assert n == len(want) > 0 and k == 4
        got = ap.missions[mb.mav.MAV_MISSION_TYPE_MISSION]
        assert [round(m.x / 1e7, 6) for m in got] == [round(w.lat, 6) for w in want]
        fence = ap.missions[mb.mav.MAV_MISSION_TYPE_FENCE]
        ll = link.geo.local(np.array([[m.y / 1e7, m.x / 1e7] for m in fence]))
        assert np.allclose(ll, [[600, 600], [800, 600], [800, 800], [600, 800]], atol=0.05)
        # the autopilot says where it is: the simulation (and so the planner) takes it
        target = np.array([900.0, 400.0])
        lon, lat = link.geo.lonlat(target)[0]
        ap.report(lon, lat)
        end = time.monotonic() + 3
        while link.poll() == 0 and time.monotonic() < end:
            time.sleep(0.005)
        assert np.allclose(sim.fleet.pos[robot], target, atol=0.05)
        sim.step()  # the planner runs from there
    finally:
        stop.set()
        th.join(2)
        link.close()
        ap.close()


def test_batch_encoder_writes_what_pymavlink_writes() -> None:
    rng = np.random.default_rng(0)
    k = 64
    sysid = rng.integers(1, 255, k)
    seq = rng.integers(0, 256, k)
    lat = rng.integers(-900_000_000, 900_000_000, k)
    lon = rng.integers(-1_800_000_000, 1_800_000_000, k)
    alt = rng.integers(0, 3, k) * rng.integers(0, 200_000, k)  # zeros too: MAVLink 2 truncates trailing zeros
    hdg = rng.integers(0, 36000, k) * (rng.random(k) < 0.5)
    vx, vy = rng.integers(-3000, 3000, k), rng.integers(-3000, 3000, k)
    got = mb.encode_batch(mb.mav.MAVLink_global_position_int_message, sysid, 1, seq,
                          {"time_boot_ms": 123456, "lat": lat, "lon": lon, "alt": alt, "relative_alt": alt,
                           "vx": vx, "vy": vy, "vz": 0, "hdg": hdg}).tobytes()
    want = b""
    for r in range(k):
        enc = mb.mav.MAVLink(None, srcSystem=int(sysid[r]), srcComponent=1)
        enc.seq = int(seq[r])
        want += mb.mav.MAVLink_global_position_int_message(123456, int(lat[r]), int(lon[r]), int(alt[r]), int(alt[r]),
                                                           int(vx[r]), int(vy[r]), 0, int(hdg[r])).pack(enc)
    assert got == want
    hb = mb.encode_batch(mb.mav.MAVLink_heartbeat_message, sysid[:3], 1, seq[:3],
                         {"type": 2, "autopilot": 0, "base_mode": 0, "custom_mode": 0, "system_status": 0,
                          "mavlink_version": 0}).tobytes()
    parsed = mb.mav.MAVLink(None).parse_buffer(hb)
    assert [m.get_srcSystem() for m in parsed] == list(sysid[:3]) and all(m.get_type() == "HEARTBEAT" for m in parsed)


def test_one_record_per_vehicle_parses_as_what_pymavlink_writes() -> None:
    rng = np.random.default_rng(1)
    k = 40
    sysid, seq = rng.integers(1, 255, k), rng.integers(0, 256, k)
    lat = rng.integers(-900_000_000, 900_000_000, k)
    alt = rng.integers(0, 3, k) * rng.integers(0, 200_000, k)  # zeros too: these payloads are not truncated
    left = rng.integers(0, 101, k)
    enc = mb.TelemetryRecords({"hb": mb.mav.MAVLink_heartbeat_message, "pos": mb.mav.MAVLink_global_position_int_message,
                               "st": mb.mav.MAVLink_sys_status_message},
                              {"hb": {"autopilot": 0, "base_mode": 0, "mavlink_version": 3},
                               "st": {"voltage_battery": 12000, "current_battery": -1}})
    buf = enc.encode(sysid, seq, {"hb": {"type": 2, "system_status": 4},
                                  "pos": {"time_boot_ms": 99, "lat": lat, "lon": -lat, "alt": alt, "relative_alt": alt,
                                          "hdg": 7},
                                  "st": {"battery_remaining": left}})
    parser = mb.mav.MAVLink(None)
    got = parser.parse_buffer(buf)
    assert len(got) == 3 * k and all(m.get_type() != "BAD_DATA" for m in got)  # every CRC good
    for r in range(k):
        p = mb.mav.MAVLink(None, srcSystem=int(sysid[r]), srcComponent=1)
        p.seq = int(seq[r])
        want = [mb.mav.MAVLink_heartbeat_message(2, 0, 0, 0, 4, 3),
                mb.mav.MAVLink_global_position_int_message(99, int(lat[r]), int(-lat[r]), int(alt[r]), int(alt[r]), 0, 0, 0, 7),
                mb.mav.MAVLink_sys_status_message(0, 0, 0, 0, 12000, -1, int(left[r]), 0, 0, 0, 0, 0, 0)]
        for n, (a, w) in enumerate(zip(got[3 * r:3 * r + 3], want, strict=True)):
            ref = mb.mav.MAVLink(None).parse_buffer(w.pack(p))[0]
            p.seq = (p.seq + 1) % 256
            assert a.get_type() == ref.get_type() and a.to_dict() == ref.to_dict()
            assert (a.get_srcSystem(), a.get_seq()) == (int(sysid[r]), (int(seq[r]) + n) % 256)


def test_geographic_scenario_zones_from_geojson_become_the_fence(tmp_path) -> None:
    import json

    lon0, lat0 = -4.50, 48.38
    box = [[lon0 + 0.005, lat0 + 0.005], [lon0 + 0.007, lat0 + 0.005], [lon0 + 0.007, lat0 + 0.007],
           [lon0 + 0.005, lat0 + 0.007], [lon0 + 0.005, lat0 + 0.005]]
    (tmp_path / "nogo.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [box]}}]}))
    (tmp_path / "bad.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    scen = {
        "area": {"crs": "lonlat", "polygon": [[lon0, lat0], [lon0 + 0.02, lat0], [lon0 + 0.02, lat0 + 0.02], [lon0, lat0 + 0.02]]},
        "zones": [{"geojson": "nogo.geojson", "as": "no_go"}],
        "robots": [{"type": "quadcopter", "count": 1, "start": [lon0 + 0.001, lat0 + 0.001]}],
        "duration": 5,
    }
    sc = parse_scenario(scen, "geo.yaml", tmp_path)
    assert sc.world.nogo.any() and len(sc.nogo_polygons) == 1
    sim = Simulation(sc, 0)
    fence = mb.fence_items(sim, mb.Geo(sim))
    got = [[round(i.lon, 6), round(i.lat, 6)] for i in fence]
    assert got == [[round(x, 6), round(y, 6)] for x, y in box[:-1]]
    scen["zones"] = [{"geojson": "bad.geojson", "as": "no_go"}]
    with pytest.raises(UsageError, match=r"zones\[0\].geojson"):
        parse_scenario(scen, "geo.yaml", tmp_path)
    scen["zones"] = [{"geojson": "nogo.geojson", "as": "lava"}]
    with pytest.raises(UsageError, match=r"zones\[0\].as: must be one of"):
        parse_scenario(scen, "geo.yaml", tmp_path)


def _upload(gcs, bridge, sim, sysid: int, points_lonlat, command=None, frame=None) -> int:
    """The ground station's side of a mission upload; returns the vehicle's MISSION_ACK result."""
    mission = mb.mav.MAV_MISSION_TYPE_MISSION
    gcs.mav.mission_count_send(sysid, 1, len(points_lonlat), mission)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        sim.step()  # the pack keeps running while the vehicle takes its mission
        bridge.tick()
        m = gcs.recv_match(type=["MISSION_REQUEST_INT", "MISSION_ACK"], blocking=True, timeout=0.05)
        if m is None or m.get_srcSystem() != sysid:
            continue
        if m.get_type() == "MISSION_ACK":
            return m.type
        lon, lat = points_lonlat[m.seq]
        gcs.mav.mission_item_int_send(sysid, 1, m.seq, frame or mb.mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                      command or mb.mav.MAV_CMD_NAV_WAYPOINT, 0, 1, 0, 10.0, 0, 0,
                                      int(round(lat * 1e7)), int(round(lon * 1e7)), 50.0, mission)
    raise AssertionError("no MISSION_ACK from the vehicle")


def test_ground_station_uploads_a_mission_and_the_robot_flies_it() -> None:
    sim = Simulation(parse_scenario(_scenario(4), "mav.yaml"), 1)
    for _ in range(20):
        sim.step()
    gcs, port = _gcs()
    bridge = mb.MavlinkBridge(sim, gcs=("127.0.0.1", port), rate_hz=1.0, origin=ORIGIN, clock=lambda: sim.t)
    geo = bridge.geo
    robot = int(np.flatnonzero((sim._view.path >= 0).any(axis=1))[0])  # one that holds tasks of the pack
    sysid = robot + 1
    wps = np.array([[300.0, 500.0], [1300.0, 150.0]])
    try:
        assert _drain(gcs, bridge, ["HEARTBEAT"], 1)  # the ground station answers the link it hears
        accepted = mb.mav.MAV_MISSION_ACCEPTED
        # refused as a whole: a waypoint in the no-go zone, a command it does not fly, a local frame
        nogo = geo.lonlat(np.array([wps[0], [700.0, 700.0]]))
        assert _upload(gcs, bridge, sim, sysid, nogo) == mb.mav.MAV_MISSION_DENIED
        assert _upload(gcs, bridge, sim, sysid, geo.lonlat(wps), command=mb.mav.MAV_CMD_DO_CHANGE_SPEED) == \
            mb.mav.MAV_MISSION_UNSUPPORTED
        assert _upload(gcs, bridge, sim, sysid, geo.lonlat(wps), frame=mb.mav.MAV_FRAME_LOCAL_NED) == \
            mb.mav.MAV_MISSION_UNSUPPORTED_FRAME
        assert robot not in sim.flights and len(bridge.stats.errors) == 3
        assert _upload(gcs, bridge, sim, sysid, geo.lonlat(wps)) == accepted
        assert robot in sim.flights and bridge.stats.missions_accepted == 1
        # it flies there, out of the pack's allocation (its tasks go to the others), and holds at the end
        done_before = sim.executions.sum()
        closest = [np.inf, np.inf]
        for _ in range(240):
            sim.step()
            bridge.tick()
            while gcs.recv_msg() is not None:  # a ground station reads its link (else its buffer overflows)
                pass
            assert sim._heads()[robot] == -1  # it acts on no task of the pack's
            for k in range(2):
                closest[k] = min(closest[k], float(np.hypot(*(sim.fleet.pos[robot] - wps[k]))))
            if sim.flights[robot].reached:
                break
        assert closest[0] <= 10.0 + 1e-6 and sim.flights[robot].reached
        assert np.hypot(*(sim.fleet.pos[robot] - wps[1])) <= 10.0 + 1e-6
        others = np.flatnonzero(np.arange(4) != robot)
        assert not (sim.cbba.Z[others] == robot).any()  # silent in the allocation: the others took its tasks over
        assert sim.executions.sum() > done_before
        for _ in range(10):
            sim.step()
        assert np.hypot(*(sim.fleet.pos[robot] - wps[1])) <= 10.0 + 1e-6
        # a ground station reading it back gets the mission it flies
        items = mb.task_items(sim, robot, geo)
        assert np.allclose(geo.local(np.array([[i.lon, i.lat] for i in items])), wps, atol=0.05)
        # an empty mission gives it back to the pack
        assert _upload(gcs, bridge, sim, sysid, []) == accepted and robot not in sim.flights
    finally:
        bridge.close()
        gcs.close()
