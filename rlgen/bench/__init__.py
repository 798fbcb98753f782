"""Multi-seed benchmark suites: ``python -m rlgen.run bench SUITE``.

* :mod:`rlgen.bench.suite`: suite files (``benchmarks/suites/*.yaml``) and their expansion into jobs;
* :mod:`rlgen.bench.execute`: one job as a subprocess ``python -m rlgen.run <command> ...`` (both backends);
* :mod:`rlgen.bench.state`: ``jobs.json``, what ran, how it ended, so a resumed suite skips finished jobs;
* :mod:`rlgen.bench.runner`: scheduling, retries and the local (process pool) and Ray backends;
* :mod:`rlgen.bench.collect`: reading finished jobs' run directories into per-seed records;
* :mod:`rlgen.bench.aggregate`: statistics over seeds (mean, std, bootstrap CIs, IQM, normalised scores);
* :mod:`rlgen.bench.report`: ``results.csv``, ``RESULTS.md`` and learning-curve PNGs;
* :mod:`rlgen.common.provenance`: the commit, device and date a table was made with.
"""
