"""The throughput shortcuts compute exactly what the plain versions do."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from casemate.pack import sensing
from casemate.pack.allocation import CBBA, CBBAConfig
from casemate.pack.avoidance import min_separation, separate, separation_filter


def _cbba_run(variant: str, *, n: int = 80, m: int = 25, rounds: int = 40) -> CBBA:
    r = np.random.default_rng(5)
    pos = r.uniform(0, 1000, (n, 2))
    tasks = r.uniform(0, 1000, (m, 2))
    value = r.uniform(1, 2, m)
    pairs = cKDTree(pos).query_pairs(250.0, output_type="ndarray")
    src = np.r_[pairs[:, 0], pairs[:, 1]]
    dst = np.r_[pairs[:, 1], pairs[:, 0]]
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    cb = CBBA(n, CBBAConfig(bundle_size=3, timeout=6))
    cb.pack_ratio = {"packed": 1.0, "plain": 0.0}.get(variant, CBBA.pack_ratio)
    cb.lean_merge_from = 0 if variant in ("lean", "lean-plain") else 1 << 62  # comparisons read as needed, or all
    if variant == "lean-plain":
        cb.pack_ratio = 0.0
    cb.add_tasks(tasks, value, np.ones((n, m), dtype=bool))
    loss = np.random.default_rng(9)
    speed, alive = np.full(n, 10.0), np.ones(n, dtype=bool)
    for k in range(rounds):
        if k == 15:
            alive[:10] = False  # losses: timeouts, releases, re-allocation
        keep = (loss.random(len(src)) >= 0.3) & alive[src] & alive[dst]
        s, d = src[keep], dst[keep]
        if variant == "shuffled":  # messages not sorted by sender take the general ordering
            p = np.random.default_rng(k).permutation(len(s))
            s, d = s[p], d[p]
        if variant == "full-snapshot":  # the senders' timestamps as a full copy, no shared buffer
            cb.round += 1
            cb.build(pos, speed, alive)
            cb.consensus(s, d, cb.snapshot(with_s=True))
        else:
            cb.step_round(pos, speed, alive, s, d)
    return cb



def _merge_batch(r: np.random.Generator, n: int, m: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random batch of merge entries (sender, receiver, task): no self-messages, receivers unique
    per task in one batch."""
    kk, ii = r.integers(0, n, e), r.integers(0, n, e)
    keep = kk != ii
    kk, ii = kk[keep], ii[keep]
    j = r.integers(0, m, len(kk))
    _, first = np.unique(ii * m + j, return_index=True)
    return kk[first], ii[first], j[first]

def test_cbba_timestamp_shortcuts_change_nothing() -> None:
    ref = _cbba_run("default")
    assert (ref.Z >= 0).any() and (ref.S > 0).any()
    for variant in ("packed", "plain", "full-snapshot", "shuffled", "lean", "lean-plain"):
        other = _cbba_run(variant)
        for a, b in ((ref.Y, other.Y), (ref.Z, other.Z), (ref.S, other.S), (ref.bundle, other.bundle),
                     (ref.path, other.path)):
            assert np.array_equal(a, b), variant


def test_sensing_all_pairs_matches_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    r = np.random.default_rng(2)
    n, t = 400, 30
    pos = r.uniform(0, 2000, (n, 2))
    pos[:3] = r.uniform(0, 2000, (3, 2))
    targets = np.r_[pos[:2], r.uniform(0, 2000, (t - 2, 2))]  # two robots right on top of a target
    args = (pos, r.random(n) > 0.1, r.uniform(100, 400, n), np.full(n, 1e-3), np.full(n, 0.9), targets,
            r.uniform(2, 10, t))
    fast = sensing.sense(*args, np.random.default_rng(4))
    monkeypatch.setattr(sensing, "ALL_PAIRS_MAX", 0)
    tree = sensing.sense(*args, np.random.default_rng(4))
    assert len(fast.robot) > 20
    for f in ("robot", "target", "level", "distance"):
        assert np.array_equal(getattr(fast, f), getattr(tree, f)), f


def test_separation_report_matches_min_separation() -> None:
    r = np.random.default_rng(3)
    n = 300
    old = np.column_stack([r.uniform(0, 120, (n, 2)), np.zeros(n)])
    new = old.copy()
    new[:, :2] += r.normal(0, 2.0, (n, 2))
    radius, active = np.full(n, 0.5), r.random(n) > 0.05
    prio = r.permutation(n)
    held, pos = separation_filter(old, new, radius, active, 0.5, prio)
    held2, pos2, rep = separate(old, new, radius, active, 0.5, prio, reach=2.5)
    assert held.any() and np.array_equal(held, held2) and np.array_equal(pos, pos2)
    assert rep == min_separation(pos2, radius, active, 2.5)


def test_merge_reads_only_the_timestamps_its_outcome_depends_on() -> None:
    """The merge gathers the news about n and m only where the decision table's outcome depends on
    them; everywhere else any comparison must give the same outcome (all 384 table entries)."""
    from casemate.pack.allocation.cbba import _NEED_M, _NEED_N, _TABLE

    code = np.arange(len(_TABLE))
    same, newer_n, beats = code % 2, (code // 2) % 2, (code // 4) % 2
    cmp_m, case_i, case_k = (code // 8) % 3, (code // 24) % 4, code // 96
    n2 = np.where(_NEED_N[case_k, case_i, beats, same], newer_n, 0)
    m2 = np.where(_NEED_M[case_k, case_i, beats, same, n2], cmp_m, 0)
    code2 = ((((case_k * 4 + case_i) * 3 + m2) * 2 + beats) * 2 + n2) * 2 + same
    assert np.array_equal(_TABLE[code2], _TABLE)
    # and the shortcut does skip work: most third-party entries need one of the two comparisons only
    assert _NEED_N.mean() < 0.5 and _NEED_M.mean() < 0.5


def test_lean_merge_equals_full_merge_on_random_states() -> None:
    """Merges that read only the comparisons they need (large tables) decide every entry as merges that
    read them all, over random winners, bids (with ties) and timestamps hitting every table case."""
    r = np.random.default_rng(11)
    n, m, e = 40, 6, 4000
    for trial in range(20):
        cb = CBBA(n)
        cb.add_tasks(r.uniform(0, 100, (m, 2)), r.uniform(1, 2, m), np.ones((n, m), dtype=bool))
        pick = np.array([-1, 0, 1, 2])  # few winners: the receiver's, the sender's, a third one, none
        cb.Z = r.choice(np.r_[pick, r.integers(0, n, 4)], (n, m)).astype(np.int64)
        cb.Y = np.where(cb.Z >= 0, r.choice([1.0, 1.5, 2.0], (n, m)), 0.0)
        Ys, Zs = cb.Y.copy(), cb.Z.copy()
        Zs[r.random((n, m)) < 0.5] = r.choice(pick, int((r.random((n, m)) < 0.5).sum()) or 1)[0]
        Ys = np.where(Zs >= 0, r.choice([1.0, 1.5, 2.0], (n, m)), 0.0)
        S = r.integers(0, 4, (n, n)).astype(np.float32)  # few values: equal, older and newer news
        Ss = r.integers(0, 4, (n, n)).astype(np.float32)
        kk, ii, j = _merge_batch(r, n, m, e)
        loc = np.r_[np.arange(n), 0]
        out = []
        for lean in (0, 1 << 62):
            c = CBBA(n)
            c.add_tasks(cb.task_pos, cb.task_value, cb.compat)
            c.Y, c.Z, c.lean_merge_from = cb.Y.copy(), cb.Z.copy(), lean
            ti, fij = c._merge(kk, ii, j, Ys, Zs, S.reshape(-1), Ss.reshape(-1), n, loc)
            out.append((c.Y, c.Z, ti, fij))
        for a, b in zip(*out, strict=True):
            assert np.array_equal(a, b), trial
        assert len(out[0][2]) > 0  # entries did change



def test_local_merge_shortcut_equals_the_table_on_random_states() -> None:
    """The local-timestamp merge decides entries where both sides name a third agent without the table;
    over random winners (the sender, the receiver, a third agent, nobody), bids with ties and timestamps
    it decides every entry as the table does (and the shortcut is taken: most entries are third-party)."""
    from casemate.pack.allocation.cbba import _local_table_act

    r = np.random.default_rng(13)
    n, m, e = 40, 6, 4000
    seen = np.zeros(3, dtype=np.int64)  # leaves, updates, resets over all trials
    for trial in range(20):
        kk, ii, j = _merge_batch(r, n, m, e)
        cb = CBBA(n, local=True)
        cb.add_tasks(r.uniform(0, 100, (m, 2)), r.uniform(1, 2, m), np.ones((n, m), dtype=bool))
        third = r.integers(0, n, (n, m))
        Z = third.copy()
        Zs = r.integers(0, n, (n, m))
        for tab in (Z, Zs):  # some entries name the receiver, the sender or nobody
            u = r.random((n, m))
            tab[u < 0.1] = -1
        sel = r.random(len(kk)) < 0.1
        Z[ii[sel], j[sel]] = kk[sel]
        sel = r.random(len(kk)) < 0.1
        Zs[kk[sel], j[sel]] = ii[sel]
        sel = r.random(len(kk)) < 0.1
        Zs[kk[sel], j[sel]] = kk[sel]
        sel = r.random(len(kk)) < 0.1
        Zs[kk[sel], j[sel]] = Z[ii[sel], j[sel]]  # both name the same winner
        cb.Z = Z.astype(np.int64)
        cb.Y = np.where(cb.Z >= 0, r.choice([1.0, 1.5, 2.0], (n, m)), 0.0)
        Ys = np.where(Zs >= 0, r.choice([1.0, 1.5, 2.0], (n, m)), 0.0)
        cb.T = r.integers(0, 4, (n, m)).astype(np.float32)  # few values: equal, older and newer news
        Ts = r.integers(0, 4, (n, m)).astype(np.float32)
        t = 3.0
        # the table's verdict on every entry, from the state before the merge
        fk, fi = kk * m + j, ii * m + j
        yk, zk, tk = Ys.reshape(-1)[fk], Zs.reshape(-1)[fk], Ts.reshape(-1)[fk]
        yi, zi, ti = cb.Y.reshape(-1)[fi], cb.Z.reshape(-1)[fi], cb.T.reshape(-1)[fi]
        si_m = np.where(zi == zk, ti, np.where(zk == ii, np.float32(t), np.float32(0)))  # as written out
        act = _local_table_act(kk, ii, yk, zk, yi, zi, ti, tk, si_m, t)
        Y0, Z0, T0 = cb.Y.copy(), cb.Z.copy(), cb.T.copy()
        ch_i, fc = cb._merge_local(kk, ii, j, Ys, Zs.astype(np.int64), Ts, t)
        upd, rst = act == 1, act == 2
        seen += np.bincount(act, minlength=3)
        assert np.array_equal(np.sort(fc), np.sort(fi[act > 0]))
        Yw, Zw, Tw = Y0.reshape(-1).copy(), Z0.reshape(-1).copy(), T0.reshape(-1).copy()
        Yw[fi[upd]], Zw[fi[upd]], Tw[fi[upd]] = yk[upd], zk[upd], si_m[upd]
        Yw[fi[rst]], Zw[fi[rst]], Tw[fi[rst]] = 0.0, -1, 0.0
        assert np.array_equal(cb.Y.reshape(-1), Yw) and np.array_equal(cb.Z.reshape(-1), Zw)
        assert np.array_equal(cb.T.reshape(-1), Tw)
        third_party = (zk >= 0) & (zk != kk) & (zk != ii) & (zi >= 0) & (zi != ii) & (zi != kk)
        assert third_party.mean() > 0.3, trial
    assert (seen > 20).all(), seen

def test_shared_neighbour_query_gives_the_same_links_and_velocities() -> None:
    """The radio and avoidance reuse one nearest-neighbour query on exchange steps."""
    from casemate.pack.avoidance import AvoidanceConfig, avoidance_reach, choose_velocities
    from casemate.pack.comms import Comms, CommsConfig

    r = np.random.default_rng(4)
    n = 600
    pos3 = np.column_stack([r.uniform(0, 3000, (n, 2)), r.choice([0.0, 50.0], n)])
    vel, v_pref = r.uniform(-10, 10, (n, 2)), r.uniform(-10, 10, (n, 2))
    radius, vmax = np.full(n, 1.0), np.full(n, 12.0)
    radio = r.choice([300.0, 800.0], n)
    alive = r.random(n) > 0.1
    cfg = AvoidanceConfig()
    idx = np.flatnonzero(alive)
    bound = max(float(radio[idx].max()), avoidance_reach(radius, vmax, alive, cfg))
    near = cKDTree(pos3[idx]).query(pos3[idx], k=17, distance_upper_bound=bound)
    plain = choose_velocities(pos3, vel, v_pref, radius, vmax, alive, cfg)
    shared = choose_velocities(pos3, vel, v_pref, radius, vmax, alive, cfg, near)
    assert np.array_equal(plain, shared) and not np.array_equal(plain, v_pref)
    comms = Comms(CommsConfig(), np.random.default_rng(0))
    a, b = comms.links(pos3, radio, alive), comms.links(pos3, radio, alive, near)
    assert len(a[0]) > n and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_redundancy_counts_footprint_entries_like_per_robot_masks() -> None:
    """Visits are counted from the cell each robot moved from; the same count as keeping every
    robot's footprint mask and counting target cells that enter it, step by step."""
    from casemate.pack.scenario import parse_scenario
    from casemate.pack.sim import Simulation

    sc = parse_scenario({
        "name": "cov", "area": {"polygon": [[0, 0], [400, 0], [400, 300], [0, 300]]},
        "terrain": {"cell": 10, "default": "land", "water": [[[250, 0], [400, 0], [400, 120], [250, 120]]]},
        "robots": [{"type": "quadcopter", "count": 3, "start": [20, 20]}, {"type": "ugv", "count": 2, "start": [30, 250]}],
        "failures": {"lose": [{"time": 20, "robots": [1]}]},
        "objectives": {"search": True, "visit": False}, "duration": 60, "dt": 0.5}, "cov.yaml")
    sim = Simulation(sc, 0)
    ny, nx = sim.world.shape
    prev = np.zeros((len(sim.fleet), ny * nx), dtype=bool)
    visits = 0
    for _ in range(sc.steps):
        sim.step()
        f = sim.fleet
        now = np.zeros_like(prev)
        iy, ix, ok = sim.world.cell_index(f.pos)
        for r in np.flatnonzero(f.alive & ok):
            off = sim._offsets[int(f.type_id[r])]
            yy, xx = iy[r] + off[:, 0], ix[r] + off[:, 1]
            good = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            now[r, yy[good] * nx + xx[good]] = True
        visits += int((now & ~prev & sim.cover_target.ravel()[None, :]).sum())
        prev = now
        assert sim.visits == visits
    assert visits > 100 and sim.metrics()["redundancy"] is not None


def test_neighbour_query_reusing_the_separation_tree_gives_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step's neighbour query takes the tree the separation filter built on where the last step left
    the robots (checked equal, point for point): the run is the one that builds its own, with fewer trees,
    also when a robot is lost or moved from outside between steps."""
    import copy
    from pathlib import Path

    import yaml

    from casemate.pack import sim as sim_mod
    from casemate.pack.scenario import parse_scenario

    raw = yaml.safe_load((Path(sim_mod.__file__).parent / "scenarios" / "harbour-search.yaml").read_text())
    raw["duration"] = 40
    raw["failures"] = {"lose": [{"time": 15, "robots": [2]}]}  # a robot lost: the tree's robots change
    sc = parse_scenario(copy.deepcopy(raw), "harbour.yaml")
    built = {"n": 0}

    class Counted(cKDTree):
        def __init__(self, *a, **k) -> None:
            built["n"] += 1
            super().__init__(*a, **k)

    monkeypatch.setattr(sim_mod, "cKDTree", Counted)
    out = []
    for reuse in (False, True):
        built["n"] = 0
        s = sim_mod.Simulation(sc, 4)
        s.reuse_tree = reuse

        def between(sim: sim_mod.Simulation) -> None:
            if sim.step_no == 30:  # moved from outside between steps (as an autopilot's report does)
                sim.fleet.pos[0] = sim.fleet.pos[1] + [4.0, 0.0]

        r = s.run(between=between)
        out.append((s.fleet.pos.tobytes(), s.fleet.vel.tobytes(), r.frames,
                    {k: r.metrics[k] for k in ("coverage", "messages_sent", "collisions", "min_separation_m")},
                    built["n"]))
    assert out[0][:4] == out[1][:4]
    assert out[1][4] < out[0][4] // 4  # the tree was reused on most steps
