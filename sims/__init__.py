"""Offline simulation: seeded worlds with known rewards, runners that drive the real loop
(in process on a virtual clock, or a live server over HTTP), sweeps, reports and plots.

See ``docs/simulation.md``. ``banditd simulate`` and ``banditd evaluate`` live in
:mod:`sims.cli`, ``banditd demo`` (``docs/demo.md``) in :mod:`sims.demo`.
"""
