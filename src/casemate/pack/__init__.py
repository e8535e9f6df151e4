"""The robot pack: a vectorised 2-D simulator and decentralised coordination for a heterogeneous swarm.

Numpy and SciPy only in the hot loop; state is arrays over all robots; same seed, same run.
Entry points: `casemate.pack.scenario.load_scenario` and `casemate.pack.sim.run_scenario`.
"""
