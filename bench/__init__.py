"""The benchmark suite: banditd against the limits of its own building blocks, in one run.

``python -m bench.run`` (or ``make bench``) starts a real ``banditd serve`` and a minimal aiohttp
handler, drives both with the same load generator at fixed concurrency levels, measures a bare
Vowpal Wabbit loop over the same examples, banditd on a PostgreSQL store with one and two edges
(and where the database's CPU goes), the learner working through a backlog, rank under that
backlog and resident memory over a long run, and writes ``bench/results/latest.json`` and
``latest.md``. Every figure is reported beside its baseline from the same run; see
``docs/bench.md``.
"""
