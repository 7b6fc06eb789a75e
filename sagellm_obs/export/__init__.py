"""Writers of a run's frames in other tools' formats (:mod:`~sagellm_obs.export.perfetto`)."""
