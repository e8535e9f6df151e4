"""The robot pack: a vectorised 2-D simulator and decentralised coordination for a heterogeneous swarm.

Numpy and SciPy only in the hot loop; state is arrays over all robots; same seed, same run.
Entry points: `casemate.pack.service` (what the CLI and the HTTP API call: run a scenario or a stored
mission, plan from detections, approve or reject), `casemate.pack.sim.Simulation` (the simulator alone),
`casemate.pack.mavlink` (the MAVLink bridge).
"""
