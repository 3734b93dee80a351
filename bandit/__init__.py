"""banditd's domain core: decisions, exploration caps, seeded sampling, joins and the loop.

Pure code: nothing here reads the clock, the environment, the network or the disk. Time and
randomness come in as arguments; storage comes in as the protocols of :mod:`bandit.store`.
"""
