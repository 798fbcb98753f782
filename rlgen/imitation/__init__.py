"""Imitation learning around GAIL and behaviour cloning: demonstration files (:mod:`rlgen.imitation.demos`) and
the evaluation every imitation command reports (:mod:`rlgen.imitation.evaluation`)."""
